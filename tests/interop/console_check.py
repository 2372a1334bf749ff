"""Drives maskd's web console in Debian's Chromium over WebDriver (Selenium, with Debian's
chromedriver) after real traffic (tests/console.rs makes it), and checks each page against
what the REST API says: the services page's pool figures, a service's per-number load (the
Reports API), a search by a participant's last four digits (masked, and whole once asked),
a session's timeline (messages with their text, the call with its status and duration, its
recording playing in the page), out-of-session contacts, callback failures and carrier
health, and closing a session from the page (then closed in the API). The browser's console
must log no error. Screenshots go to the directory given.

Usage: console_check.py BASE_URL ACCOUNT_SID TOKEN SCREENSHOT_DIR EXPECT_JSON
"""

import base64
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, ACCOUNT, TOKEN, SHOTS, EXPECT = sys.argv[1:6]
EXPECT = json.loads(EXPECT)
AUTH = "Basic " + base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()


def rest(path):
    req = urllib.request.Request(BASE + path, headers={"Authorization": AUTH})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def check(cond, what):
    if not cond:
        raise AssertionError(what)


opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
          "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required",
          "--no-first-run", "--disable-extensions", "--disable-background-networking"):
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(20)
wait = WebDriverWait(driver, 15)


def page(hash_, name):
    """Opens a page of the console and waits until it has rendered."""
    driver.execute_script("document.getElementById('main').removeAttribute('data-page')")
    driver.execute_script("location.hash = arguments[0]", hash_)
    wait.until(lambda d: d.find_element(By.ID, "main").get_attribute("data-page") is not None)
    got = driver.find_element(By.ID, "main").get_attribute("data-page")
    check(got == name, f"{hash_}: page {got}: {driver.find_element(By.ID, 'main').text}")


def shot(name):
    # The whole page (bounded), then back to the usual window.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(height + 160, 600), 2400))
    driver.save_screenshot(os.path.join(SHOTS, f"console-{name}.png"))
    driver.set_window_size(1280, 1000)


def cells(row):
    return [c.text for c in row.find_elements(By.TAG_NAME, "td")]


try:
    # Every request of the page carries the operator's credentials.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": AUTH}})
    driver.get(BASE + "/console")
    wait.until(lambda d: d.find_element(By.ID, "main").get_attribute("data-page") == "services")
    check(driver.current_url.endswith("/console/"), driver.current_url)

    # Services: each pool's figures as the API has them.
    services = rest("/v1/Services")["services"]
    for svc in services:
        numbers = rest(f"/v1/Services/{svc['sid']}/PhoneNumbers?PageSize=100")["phone_numbers"]
        sessions = rest(f"/v1/Services/{svc['sid']}/Sessions?PageSize=100")["sessions"]
        active = sum(1 for s in sessions if s["status"] in ("open", "in-progress"))
        in_use = sum(1 for n in numbers if n["in_use"] > 0)
        row = driver.find_element(By.CSS_SELECTOR, f"#services tr[data-sid='{svc['sid']}']")
        c = cells(row)
        check(c[0] == svc["unique_name"] and c[1] == str(len(numbers)) and c[2] == str(in_use)
              and c[4] == str(active), f"services row {c} vs {len(numbers)} {in_use} {active}")
        check(row.find_elements(By.CSS_SELECTOR, "svg.chart polyline"), "a utilisation chart")
    shot("services")

    # A service: per-number load over the last 7 days, as the Reports API counts it.
    shop = next(s for s in services if s["unique_name"] == EXPECT["service"])
    page(f"#/service/{shop['sid']}", "service")
    daily = rest(f"/v1/Services/{shop['sid']}/Reports/Daily?PageSize=100")["reports"]
    for n in rest(f"/v1/Services/{shop['sid']}/PhoneNumbers")["phone_numbers"]:
        rows = [r for r in daily if r["phone_number"] == n["phone_number"]]
        msgs = sum(r["messages_in"] + r["messages_out"] for r in rows)
        calls = sum(r["calls_in"] + r["calls_out"] for r in rows)
        minutes = sum(r["call_minutes"] for r in rows)
        row = driver.find_element(By.CSS_SELECTOR, f"#numbers tr[data-number='{n['phone_number']}']")
        c = cells(row)
        check((c[4], c[5], c[6]) == (str(msgs), str(calls), str(minutes)),
              f"{n['phone_number']}: {c} vs {msgs} {calls} {minutes}")
    check(driver.find_elements(By.CSS_SELECTOR, "#load-chart rect.messages"), "a load chart")
    shot("service")

    # Search by the last four digits of a participant's number: masked unless asked.
    page("#/sessions?q=" + EXPECT["search_digits"], "sessions")
    rows = driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    check(any(r.get_attribute("data-sid") == EXPECT["session_sid"] for r in rows),
          f"search found {[cells(r) for r in rows]}")
    text = driver.find_element(By.ID, "results").text
    check(EXPECT["participant"] not in text, "numbers are masked")
    check("*" + EXPECT["search_digits"] in text, f"masked to the last four digits: {text}")
    shot("search")
    driver.find_element(By.ID, "reveal").click()
    main_text = lambda d: d.execute_script("return document.getElementById('main').textContent")
    wait.until(lambda d: EXPECT["participant"] in main_text(d))
    driver.find_element(By.ID, "reveal").click()
    wait.until(lambda d: EXPECT["participant"] not in main_text(d))

    # The session's timeline: every interaction, message texts, the call and its recording.
    page(f"#/session/{EXPECT['session_sid']}", "session")
    interactions = rest(f"/v1/Services/{shop['sid']}/Sessions/{EXPECT['session_sid']}/Interactions?PageSize=100")["interactions"]
    events = driver.find_elements(By.CSS_SELECTOR, "#timeline li.event")
    check(len(events) == len(interactions), f"{len(events)} events, {len(interactions)} interactions")
    bodies = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#timeline li.message blockquote")]
    for body in EXPECT["bodies"]:
        check(body in bodies, f"{body!r} in {bodies}")
    call = driver.find_element(By.CSS_SELECTOR, "#timeline li.call")
    check("completed" in call.text and " s" in call.text, call.text)
    audio = call.find_element(By.CSS_SELECTOR, ".recording audio")
    played = driver.execute_async_script(
        """
        const [a, done] = arguments;
        const give = (why) => done({why, duration: a.duration, time: a.currentTime});
        const t = setTimeout(() => give("timeout"), 12000);
        a.addEventListener("error", () => { clearTimeout(t); give("error " + (a.error && a.error.code)); });
        const go = () => a.play().then(() => setTimeout(() => { clearTimeout(t); give("played"); }, 1200),
                                       (e) => { clearTimeout(t); give("play refused: " + e); });
        if (a.readyState >= 1) go(); else a.addEventListener("loadedmetadata", go, {once: true});
        """,
        audio,
    )
    check(played["why"] == "played", f"the recording did not play: {played}")
    check(played["duration"] >= 6.5, f"the recording lasts the call: {played}")
    check(played["time"] > 0.5, f"playback advanced: {played}")
    shot("session")

    # Out-of-session contacts: the stranger, masked.
    page(f"#/contacts?service={shop['sid']}", "contacts")
    text = driver.find_element(By.ID, "contacts").text
    check("*" + EXPECT["stranger"][-4:] in text and EXPECT["stranger"] not in text, text)
    shot("contacts")

    # Callbacks and carriers.
    page("#/health", "health")
    failures = driver.find_element(By.ID, "failures").text
    check(EXPECT["failing_callback"] in failures, failures)
    binds = {r.get_attribute("data-peer"): cells(r) for r in driver.find_elements(By.CSS_SELECTOR, "#binds tbody tr")}
    check(binds.get("carrier-a", [None, None])[1] == "1", f"binds {binds}")
    trunks = driver.find_element(By.ID, "trunks").text
    check(EXPECT["down_trunk"] in trunks and "down" in trunks, trunks)
    shot("health")

    # Closing a session, the console's one write: then closed in the API.
    page(f"#/session/{EXPECT['session_sid']}", "session")
    driver.find_element(By.ID, "close").click()
    wait.until(EC.alert_is_present())
    driver.switch_to.alert.accept()
    # The page renders again after the close: read the status afresh each time.
    wait.until(lambda d: "closed" in d.execute_script(
        "const e = document.getElementById('session-status'); return e ? e.textContent : ''"))
    s = rest(f"/v1/Services/{shop['sid']}/Sessions/{EXPECT['session_sid']}")
    check(s["status"] == "closed" and s["closed_reason"] == "api", f"API says {s['status']} {s['closed_reason']}")

    # Nothing went wrong in the page.
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check(not errors, f"browser console errors: {errors}")
    print("console ok")
finally:
    driver.quit()
