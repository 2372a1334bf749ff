#!/usr/bin/env python3
"""Interop test: drive maskd's Twilio-Proxy-compatible REST API with Twilio's
official Python helper library (`twilio`, pinned in requirements.txt) and check
that a realistic application flow behaves as it would against Twilio Proxy v1.

Usage:
    python twilio_flow.py BASE_URL ACCOUNT_SID AUTH_TOKEN

    BASE_URL     e.g. http://127.0.0.1:8080 (must be loopback; must equal the
                 daemon's api.public_url, since every `url` field is checked)
    ACCOUNT_SID  the daemon's api.account_sid ("AC" + 32 hex)
    AUTH_TOKEN   the daemon's api.auth_token

The daemon must start with an empty store (no services configured).
Exit status: 0 when every check passed, 1 on the first failed check (with a
message saying what was expected and what came back), 2 on bad usage.

How the library is pointed at maskd: `client.proxy.base_url = BASE_URL`.
twilio-python builds every Proxy URL as
    Domain.base_url.strip("/") + "/" + "v1" + "/" + "<resource path>"
(twilio/base/domain.py, twilio/base/version.py), so that one assignment sends
every call to BASE_URL + "/v1/...". List paging does not use base_url: the
library GETs `meta.next_page_url` verbatim (twilio/base/page.py), which is why
the server's public_url has to be BASE_URL. Every request the library makes
goes through GuardedHttpClient below, which refuses anything outside
BASE_URL + "/v1/" and bounds the total number of requests.
"""

import datetime as dt
import http.server
import ipaddress
import json
import os
import signal
import sys
import threading
import time
import traceback
from urllib.parse import parse_qsl, urlparse

import twilio
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

# ---------------------------------------------------------------------------
# Limits: every wait and every loop in this script is bounded.
# ---------------------------------------------------------------------------
WALL_CLOCK_LIMIT_S = 300     # whole run
HTTP_TIMEOUT_S = 30          # one request
MAX_REQUESTS = 2000          # all requests together (the flow needs ~250)
LIST_LIMIT = 1000            # records any single list() may return
MAX_PAGES = 20               # pages walked by hand

# ---------------------------------------------------------------------------
# Test data
# ---------------------------------------------------------------------------
SERVICE_NAME = "interop-svc"
POOL = ["+14155550101", "+14155550102", "+14155550103"]   # unreserved, US
RESERVED = "+14155550199"                                 # reserved, US
SPARE = "+14155550150"             # added then deleted (not in use)
NOT_IN_POOL = "+14155550999"       # never added to the service
ALICE = "+14155551001"             # the person who ends up in many sessions
BOB = "+14155551002"
CAROL = "+14155551003"
DAVE = "+14155551004"
PAGING_SESSIONS = 120              # > 2 pages of 50, > 1 page of 100


# ---------------------------------------------------------------------------
# Check helpers
# ---------------------------------------------------------------------------
class CheckFailed(Exception):
    """A check failed: the message says what was expected and what came back."""


STATE = {"section": "setup", "checks": 0, "sections": []}


def section(title):
    """Start a numbered section; used to prefix failure messages."""
    if STATE["section"] != "setup":
        STATE["sections"].append(STATE["section"])
    STATE["section"] = title
    print(f"== {title}", flush=True)


def check(cond, msg):
    if not cond:
        raise CheckFailed(msg)
    STATE["checks"] += 1


def eq(got, want, what):
    check(got == want, f"{what}: expected {want!r}, got {got!r}")


def is_sid(value, prefix, what):
    check(
        isinstance(value, str)
        and len(value) == 34
        and value.startswith(prefix)
        and all(c in "0123456789abcdefABCDEF" for c in value[2:]),
        f"{what}: expected a 34-char SID starting with {prefix!r}, got {value!r}",
    )


def is_time(value, what):
    # The library turns a timestamp into a datetime only when it is exactly
    # "%Y-%m-%dT%H:%M:%SZ" (twilio/base/deserialize.py); anything else stays
    # a str. So this also checks the wire format of every date field.
    check(
        isinstance(value, dt.datetime),
        f"{what}: expected an ISO 8601 'YYYY-MM-DDTHH:MM:SSZ' timestamp, got {value!r}",
    )


def _error_of(exc):
    """(http status, twilio code) of an API failure raised by the library."""
    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        return exc.status, exc.code
    # list()/page() raise a plain TwilioException("Unable to fetch page",
    # response) for any non-200 page (twilio/base/page.py).
    resp = exc.args[1] if len(exc.args) > 1 else None
    if resp is None or not hasattr(resp, "status_code"):
        raise CheckFailed(f"unexpected library error without a response: {exc!r}")
    try:
        code = json.loads(resp.text).get("code")
    except (ValueError, AttributeError):
        code = None
    return resp.status_code, code


def expect_error(what, fn, status, code):
    """Call fn(); it must fail with HTTP `status` and Twilio error `code`.

    `status` / `code` may be a single value, a tuple of accepted values, or
    None (anything). Returns (status, code) as seen, so callers can print it.
    """
    try:
        result = fn()
    except TwilioException as exc:  # base of TwilioRestException too
        got_status, got_code = _error_of(exc)
    else:
        raise CheckFailed(
            f"{what}: expected HTTP {status} with code {code}, "
            f"but the call succeeded and returned {result!r}"
        )
    ok_status = status is None or got_status in (
        status if isinstance(status, tuple) else (status,))
    ok_code = code is None or got_code in (
        code if isinstance(code, tuple) else (code,))
    check(
        ok_status and ok_code,
        f"{what}: expected HTTP {status} with code {code}, "
        f"got HTTP {got_status} with code {got_code}",
    )
    return got_status, got_code


def header(headers, name):
    for k, v in (headers or {}).items():
        if k.lower() == name.lower():
            return v
    return None


def payload_of(page):
    # The raw JSON of a list page, to look at `meta` (the library keeps it in
    # Page._payload and has no public accessor).
    return page._payload


# ---------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------
class GuardedHttpClient(TwilioHttpClient):
    """TwilioHttpClient that only talks to BASE + /v1/, with a request budget.

    It records (method, url) of every request so the script can prove where
    the library actually sent them.
    """

    sent = []  # shared by all clients of this run

    def __init__(self, prefix):
        super().__init__(timeout=HTTP_TIMEOUT_S)
        self.prefix = prefix
        # Ignore HTTP(S)_PROXY / NO_PROXY / .netrc from the environment:
        # requests must go straight to the loopback base URL.
        self.session.trust_env = False

    def request(self, method, url, *args, **kwargs):
        if not url.startswith(self.prefix):
            raise CheckFailed(
                f"the library tried to send {method} {url}, outside {self.prefix} "
                "(a next_page_url not under api.public_url?)"
            )
        if len(GuardedHttpClient.sent) >= MAX_REQUESTS:
            raise CheckFailed(f"more than {MAX_REQUESTS} requests: runaway paging?")
        GuardedHttpClient.sent.append((method, url))
        return super().request(method, url, *args, **kwargs)


def make_client(base, account_sid, auth_token):
    http_client = GuardedHttpClient(base + "/v1/")
    # A non-empty `environment` stops the client reading TWILIO_* variables
    # (TWILIO_EDGE / TWILIO_REGION would rewrite the host name).
    client = Client(
        account_sid,
        auth_token,
        http_client=http_client,
        environment={"MASKD_INTEROP": "1"},
    )
    client.edge = None
    client.region = None
    # The one setting that points the Proxy domain at maskd.
    client.proxy.base_url = base
    return client


class CallbackSink:
    """Loopback HTTP server that records status callbacks (informational)."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(n, 1 << 20)).decode("utf-8", "replace")
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/status"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------
# The flow
# ---------------------------------------------------------------------------
def run(base, account_sid, auth_token):
    client = make_client(base, account_sid, auth_token)
    proxy = client.proxy.v1
    sink = CallbackSink()
    live_sessions = set()   # sids of sessions that exist in the service

    # -- 0. Start state ------------------------------------------------------
    section("0. start state")
    existing = proxy.services.list(limit=LIST_LIMIT)
    eq(GuardedHttpClient.sent[0], ("GET", base + "/v1/Services"),
       "first request (proves client.proxy.base_url routes to BASE/v1)")
    stale = [s for s in existing if s.unique_name == SERVICE_NAME]
    if existing:
        print(f"   note: store not empty ({len(existing)} services)")
    for s in stale:  # left over by an earlier, interrupted run
        print(f"   note: deleting leftover service {s.sid} ({SERVICE_NAME})")
        proxy.services(s.sid).delete()

    # -- 1. Service ----------------------------------------------------------
    section("1. service: create, fetch by sid and unique_name, update")
    resp = proxy.services.create_with_http_info(unique_name=SERVICE_NAME, default_ttl=3600)
    eq(GuardedHttpClient.sent[-1], ("POST", base + "/v1/Services"), "create request URL")
    eq(resp.status_code, 201, "HTTP status of service create")
    ctype = header(resp.headers, "Content-Type") or ""
    check(ctype.startswith("application/json"),
          f"Content-Type of service create: expected application/json, got {ctype!r}")
    svc = resp.data
    is_sid(svc.sid, "KS", "service.sid")
    svc_url = f"{base}/v1/Services/{svc.sid}"
    eq(svc.url, svc_url, "service.url")
    eq(svc.account_sid, account_sid, "service.account_sid")
    eq(svc.unique_name, SERVICE_NAME, "service.unique_name")
    eq(svc.default_ttl, 3600, "service.default_ttl")
    eq(svc.geo_match_level, "country", "service.geo_match_level default")
    eq(svc.number_selection_behavior, "prefer-sticky",
       "service.number_selection_behavior default")
    check(isinstance(svc.links, dict), f"service.links: expected an object, got {svc.links!r}")
    eq(svc.links.get("sessions"), svc_url + "/Sessions", "service.links.sessions")
    eq(svc.links.get("phone_numbers"), svc_url + "/PhoneNumbers", "service.links.phone_numbers")
    is_time(svc.date_created, "service.date_created")
    is_time(svc.date_updated, "service.date_updated")

    svc_ctx = proxy.services(svc.sid)
    eq(svc_ctx.fetch().sid, svc.sid, "service fetched by sid")
    by_name = proxy.services(SERVICE_NAME).fetch()
    eq(GuardedHttpClient.sent[-1], ("GET", f"{base}/v1/Services/{SERVICE_NAME}"),
       "fetch-by-unique_name request URL")
    eq(by_name.sid, svc.sid, "service fetched by unique_name")

    upd = svc_ctx.update(default_ttl=7200, callback_url=sink.url)
    eq(upd.default_ttl, 7200, "service.default_ttl after update")
    eq(upd.callback_url, sink.url, "service.callback_url after update")
    eq(upd.unique_name, SERVICE_NAME, "service.unique_name unchanged by update")
    again = svc_ctx.fetch()
    eq((again.default_ttl, again.callback_url), (7200, sink.url), "service re-fetched after update")

    # -- 2. Proxy number pool ------------------------------------------------
    section("2. phone numbers: pool of 3 unreserved + 1 reserved")
    pns = {}   # phone_number -> PhoneNumberInstance
    for number, reserved in [(n, False) for n in POOL] + [(RESERVED, True)]:
        if reserved:
            pn = svc_ctx.phone_numbers.create(phone_number=number, is_reserved=True)
        else:
            pn = svc_ctx.phone_numbers.create(phone_number=number)
        what = f"phone number {number}"
        is_sid(pn.sid, "PN", f"{what}.sid")
        eq(pn.phone_number, number, f"{what}.phone_number")
        eq(pn.iso_country, "US", f"{what}.iso_country")
        eq(pn.is_reserved, reserved, f"{what}.is_reserved")
        eq(pn.in_use, 0, f"{what}.in_use")
        eq(pn.service_sid, svc.sid, f"{what}.service_sid")
        eq(pn.account_sid, account_sid, f"{what}.account_sid")
        eq(pn.url, f"{svc_url}/PhoneNumbers/{pn.sid}", f"{what}.url")
        pns[number] = pn
    unreserved_sids = {pns[n].sid for n in POOL}

    toggled = svc_ctx.phone_numbers(pns[POOL[0]].sid).update(is_reserved=True)
    eq(toggled.is_reserved, True, "is_reserved after update(is_reserved=True)")
    eq(svc_ctx.phone_numbers(pns[POOL[0]].sid).fetch().is_reserved, True,
       "is_reserved re-fetched")
    toggled = svc_ctx.phone_numbers(pns[POOL[0]].sid).update(is_reserved=False)
    eq(toggled.is_reserved, False, "is_reserved after update(is_reserved=False)")

    listed = svc_ctx.phone_numbers.list(limit=LIST_LIMIT)
    eq(sorted(p.phone_number for p in listed), sorted(POOL + [RESERVED]), "phone_numbers.list()")

    def in_use_by_number():
        return {p.phone_number: p.in_use for p in svc_ctx.phone_numbers.list(limit=LIST_LIMIT)}

    # -- 3. Session with two participants ------------------------------------
    section("3. session create with two participants")
    s1 = svc_ctx.sessions.create(
        unique_name="order-1",
        ttl=600,
        participants=[{"Identifier": ALICE}, {"Identifier": BOB}],
    )
    live_sessions.add(s1.sid)
    is_sid(s1.sid, "KC", "session.sid")
    s1_url = f"{svc_url}/Sessions/{s1.sid}"
    eq(s1.url, s1_url, "session.url")
    eq(s1.service_sid, svc.sid, "session.service_sid")
    eq(s1.account_sid, account_sid, "session.account_sid")
    eq(s1.unique_name, "order-1", "session.unique_name")
    eq(s1.status, "open", "session.status")
    eq(s1.mode, "voice-and-message", "session.mode default")
    eq(s1.closed_reason, "", "session.closed_reason while open")
    eq(s1.ttl, 600, "session.ttl")
    eq(s1.date_ended, None, "session.date_ended while open")
    is_time(s1.date_created, "session.date_created")
    check(isinstance(s1.links, dict), f"session.links: expected an object, got {s1.links!r}")
    eq(s1.links.get("participants"), s1_url + "/Participants", "session.links.participants")
    eq(s1.links.get("interactions"), s1_url + "/Interactions", "session.links.interactions")

    s1_ctx = svc_ctx.sessions(s1.sid)
    parts = s1_ctx.participants.list(limit=LIST_LIMIT)
    eq(len(parts), 2, "number of participants created with the session")
    eq(sorted(p.identifier for p in parts), sorted([ALICE, BOB]), "participant identifiers")
    for p in parts:
        what = f"participant {p.identifier}"
        is_sid(p.sid, "KP", f"{what}.sid")
        eq(p.session_sid, s1.sid, f"{what}.session_sid")
        check(p.proxy_identifier in POOL,
              f"{what}.proxy_identifier: expected one of the unreserved pool {POOL}, "
              f"got {p.proxy_identifier!r}")
        is_sid(p.proxy_identifier_sid, "PN", f"{what}.proxy_identifier_sid")
        eq(p.proxy_identifier_sid, pns[p.proxy_identifier].sid,
           f"{what}.proxy_identifier_sid matches the pool entry")
        eq(p.date_deleted, None, f"{what}.date_deleted")
        eq(p.url, f"{s1_url}/Participants/{p.sid}", f"{what}.url")
    alice_1 = next(p for p in parts if p.identifier == ALICE)
    eq(svc_ctx.sessions("order-1").fetch().sid, s1.sid, "session fetched by unique_name")

    use = in_use_by_number()
    for p in parts:
        check(use[p.proxy_identifier] >= 1,
              f"in_use of {p.proxy_identifier} after it was assigned: expected >= 1, got {use}")
    for n in POOL + [RESERVED]:
        if n not in {p.proxy_identifier for p in parts}:
            eq(use[n], 0, f"in_use of unassigned number {n}")

    # -- 4. Participant create, automatic and explicit -----------------------
    section("4. participants.create (automatic and explicit reserved number)")
    s2 = svc_ctx.sessions.create(unique_name="order-2")
    live_sessions.add(s2.sid)
    eq(s2.ttl, 7200, "session.ttl defaults to the service's default_ttl")
    s2_ctx = svc_ctx.sessions(s2.sid)
    carol = s2_ctx.participants.create(identifier=CAROL, friendly_name="Carol")
    is_sid(carol.sid, "KP", "Carol.sid")
    eq(carol.identifier, CAROL, "Carol.identifier")
    eq(carol.friendly_name, "Carol", "Carol.friendly_name")
    check(carol.proxy_identifier in POOL,
          f"Carol.proxy_identifier: expected one of {POOL}, got {carol.proxy_identifier!r}")
    dave = s2_ctx.participants.create(identifier=DAVE, friendly_name="Dave",
                                      proxy_identifier=RESERVED)
    eq(dave.proxy_identifier, RESERVED, "Dave.proxy_identifier (explicit reserved number)")
    eq(dave.proxy_identifier_sid, pns[RESERVED].sid, "Dave.proxy_identifier_sid")
    eq(dave.friendly_name, "Dave", "Dave.friendly_name")
    eq(s2_ctx.participants(carol.sid).fetch().identifier, CAROL, "participant fetched by sid")
    check(in_use_by_number()[RESERVED] >= 1, "in_use of the reserved number once assigned explicitly")

    # -- 5. Exclusivity: one person, distinct numbers ------------------------
    section("5. exclusivity: the same person gets a distinct number per session")
    alice_numbers = [alice_1.proxy_identifier]
    for i in (1, 2):
        sx = svc_ctx.sessions.create(unique_name=f"excl-{i}")
        live_sessions.add(sx.sid)
        sx_ctx = svc_ctx.sessions(sx.sid)
        pa = sx_ctx.participants.create(identifier=ALICE)
        check(pa.proxy_identifier in POOL and pa.proxy_identifier not in alice_numbers,
              f"excl-{i}: Alice must get an unreserved number she does not already use "
              f"(she has {alice_numbers}), got {pa.proxy_identifier!r}")
        alice_numbers.append(pa.proxy_identifier)
        sx_ctx.participants.create(identifier=f"+1415555120{i}")  # her counterpart
    eq(sorted(alice_numbers), sorted(POOL), "Alice now holds every unreserved number")
    sx = svc_ctx.sessions.create(unique_name="excl-3")
    live_sessions.add(sx.sid)
    expect_error("Alice in a 4th concurrent session (pool exhausted for her)",
                 lambda: svc_ctx.sessions(sx.sid).participants.create(identifier=ALICE),
                 400, 80208)

    # -- 6. Paging -----------------------------------------------------------
    section(f"6. paging over {PAGING_SESSIONS} extra sessions")
    for i in range(PAGING_SESSIONS):
        live_sessions.add(svc_ctx.sessions.create(unique_name=f"page-{i:03d}").sid)
    total = len(live_sessions)

    # list() GETs the first page, then each meta.next_page_url verbatim until
    # one is null (the limit is only a safety bound).
    n_before = len(GuardedHttpClient.sent)
    all_sessions = svc_ctx.sessions.list(page_size=50, limit=total + 50)
    reqs = GuardedHttpClient.sent[n_before:]
    sids = [s.sid for s in all_sessions]
    eq(len(sids), len(set(sids)), "sessions.list(page_size=50): no record twice")
    eq(set(sids), live_sessions, "sessions.list(page_size=50): every session, once")
    eq(len(reqs), -(-total // 50),
       f"requests made by sessions.list(page_size=50) for {total} sessions "
       "(last page must have next_page_url null)")
    for method, url in reqs[1:]:
        check(method == "GET" and url.startswith(svc_url + "/Sessions?"),
              f"followed next_page_url: expected GET {svc_url}/Sessions?..., got {method} {url}")

    first = svc_ctx.sessions.page(page_size=50)
    meta = payload_of(first).get("meta") or {}
    eq(meta.get("key"), "sessions", "meta.key of a sessions page")
    eq(len(list(first)), 50, "records on the first page of 50")
    eq(meta.get("page_size"), 50, "meta.page_size")
    eq(meta.get("page"), 0, "meta.page of the first page")
    check(isinstance(first.next_page_url, str)
          and first.next_page_url.startswith(svc_url + "/Sessions"),
          f"meta.next_page_url of page 1: expected {svc_url}/Sessions?..., "
          f"got {first.next_page_url!r}")
    eq(meta.get("previous_page_url"), None, "meta.previous_page_url of the first page")
    for k in ("url", "first_page_url"):
        check(isinstance(meta.get(k), str) and meta[k].startswith(svc_url + "/Sessions"),
              f"meta.{k}: expected a URL under {svc_url}/Sessions, got {meta.get(k)!r}")

    big = svc_ctx.sessions.page(page_size=1000)  # the server caps pages at 100
    walked = [s.sid for s in big]
    eq(len(walked), 100, "records on a page asked for with PageSize=1000 (cap is 100)")
    page, pages = big, 1
    while pages < MAX_PAGES:
        page = page.next_page()
        if page is None:
            break
        pages += 1
        walked.extend(s.sid for s in page)
    check(page is None, f"paging did not end within {MAX_PAGES} pages")
    eq(sorted(walked), sorted(live_sessions), "sessions walked page by page (PageSize=1000)")
    eq(pages, -(-total // 100), "number of pages of at most 100")

    # -- 7. Close, re-open, conflicts ----------------------------------------
    section("7. close and re-open; 80604 / 80607 / 80608")
    s1_numbers = {p.proxy_identifier for p in parts}
    use_before = in_use_by_number()
    closed = s1_ctx.update(status="closed")
    eq(closed.status, "closed", "status after update(status=closed)")
    eq(closed.closed_reason, "api", "closed_reason after closing through the API")
    is_time(closed.date_ended, "date_ended after close")
    use_closed = in_use_by_number()
    for n in s1_numbers:
        check(use_closed[n] < use_before[n],
              f"in_use of {n} must drop when order-1 closes: {use_before[n]} -> {use_closed[n]}")

    reopened = s1_ctx.update(status="in-progress")
    eq(reopened.status, "in-progress", "status after re-open (update status=in-progress)")
    eq(in_use_by_number(), use_before, "in_use of every number after re-open")
    print(f"   info: after re-open closed_reason={reopened.closed_reason!r} "
          f"date_ended={reopened.date_ended!r}")

    expect_error("invalid transition in-progress -> open",
                 lambda: s1_ctx.update(status="open"), 400, 80608)

    eq(s1_ctx.update(status="closed").status, "closed", "status after closing order-1 again")
    expect_error("ttl update on a closed session",
                 lambda: s1_ctx.update(ttl=120), 400, 80607)

    # Another session takes Alice's (identifier, proxy) pair from order-1 ...
    s1b = svc_ctx.sessions.create(unique_name="order-1b")
    live_sessions.add(s1b.sid)
    taken = svc_ctx.sessions(s1b.sid).participants.create(
        identifier=ALICE, proxy_identifier=alice_1.proxy_identifier)
    eq(taken.proxy_identifier, alice_1.proxy_identifier,
       "explicit proxy_identifier freed by the closed session")
    # ... so re-opening order-1 would give one route key two participants.
    expect_error("re-open of order-1 while its pair is active in order-1b",
                 lambda: s1_ctx.update(status="in-progress"), 400, 80604)
    eq(s1_ctx.fetch().status, "closed", "order-1 still closed after the refused re-open")

    # -- 8. MessageInteraction -----------------------------------------------
    section("8. message interaction")
    carol_ctx = s2_ctx.participants(carol.sid)
    mi = carol_ctx.message_interactions.create(body="hello")
    is_sid(mi.sid, "KI", "message_interaction.sid")
    eq(mi.type, "message", "message_interaction.type")
    try:
        data = json.loads(mi.data)
    except (TypeError, ValueError):
        raise CheckFailed(f"message_interaction.data: expected JSON text, got {mi.data!r}")
    eq(data.get("body") if isinstance(data, dict) else data, "hello",
       "message_interaction.data.body")
    eq(mi.outbound_resource_status, "queued", "message_interaction.outbound_resource_status")
    eq(mi.outbound_participant_sid, carol.sid, "message_interaction.outbound_participant_sid")
    eq(mi.participant_sid, carol.sid, "message_interaction.participant_sid")
    eq(mi.inbound_participant_sid, None, "message_interaction.inbound_participant_sid")
    eq(mi.outbound_resource_type, "Message", "message_interaction.outbound_resource_type")
    eq(mi.session_sid, s2.sid, "message_interaction.session_sid")
    eq(mi.service_sid, svc.sid, "message_interaction.service_sid")
    eq(mi.url, f"{svc_url}/Sessions/{s2.sid}/Participants/{carol.sid}/MessageInteractions/{mi.sid}",
       "message_interaction.url")

    inter = s2_ctx.interactions.list(limit=LIST_LIMIT)
    check(mi.sid in [i.sid for i in inter],
          f"interactions.list() of order-2 must contain {mi.sid}, got {[i.sid for i in inter]}")
    mis = carol_ctx.message_interactions.list(limit=LIST_LIMIT)
    check(mi.sid in [i.sid for i in mis],
          f"message_interactions.list() must contain {mi.sid}, got {[i.sid for i in mis]}")
    eq((payload_of(carol_ctx.message_interactions.page()).get("meta") or {}).get("key"),
       "interactions", "meta.key of a message_interactions page")
    eq((payload_of(s2_ctx.interactions.page()).get("meta") or {}).get("key"),
       "interactions", "meta.key of an interactions page")
    got = carol_ctx.message_interactions(mi.sid).fetch()
    eq((got.sid, got.type), (mi.sid, "message"), "message interaction fetched by sid")
    got = s2_ctx.interactions(mi.sid).fetch()
    eq((got.sid, got.type, got.outbound_participant_sid), (mi.sid, "message", carol.sid),
       "the same record fetched as an Interaction")
    s2_now = s2_ctx.fetch()
    check(s2_now.status in ("open", "in-progress"),
          f"order-2 status after a message: expected open or in-progress, got {s2_now.status!r}")
    print(f"   info: order-2 after the message: status={s2_now.status!r} "
          f"date_last_interaction={s2_now.date_last_interaction!r}")

    # -- 9. Participant soft delete ------------------------------------------
    section("9. participant soft delete; 80612")
    resp = s2_ctx.participants(dave.sid).delete_with_http_info()
    check(resp.status_code in (200, 204),
          f"HTTP status of participant delete: expected 204 (or 200), got {resp.status_code}")
    after = {p.sid: p for p in s2_ctx.participants.list(limit=LIST_LIMIT)}
    check(dave.sid in after, "a soft-deleted participant stays listed on its session")
    is_time(after[dave.sid].date_deleted, "date_deleted of the deleted participant")
    eq(after[carol.sid].date_deleted, None, "date_deleted of the other participant")
    expect_error("re-adding a soft-deleted identifier",
                 lambda: s2_ctx.participants.create(identifier=DAVE), 400, 80612)

    # -- 10. Documented errors -----------------------------------------------
    section("10. documented errors")
    expect_error("fetch an unknown service",
                 lambda: proxy.services("KS" + "0" * 32).fetch(), 404, 20404)
    _, code = expect_error("fetch a session by an unknown unique_name",
                           lambda: svc_ctx.sessions("no-such-session").fetch(),
                           404, (20404, 80308))
    print(f"   info: unknown session unique_name -> code {code}")
    bad = make_client(base, account_sid, auth_token + "-wrong")
    expect_error("wrong auth token", lambda: bad.proxy.v1.services(svc.sid).fetch(), 401, 20003)
    expect_error("wrong auth token on a list",
                 lambda: bad.proxy.v1.services.list(limit=10), 401, 20003)
    expect_error("duplicate service unique_name",
                 lambda: proxy.services.create(unique_name=SERVICE_NAME), 400, 80602)
    expect_error("duplicate session unique_name",
                 lambda: svc_ctx.sessions.create(unique_name="order-2"), 400, 80603)

    e1 = svc_ctx.sessions.create(
        unique_name="errs-1",
        participants=[{"Identifier": "+14155551005"}, {"Identifier": "+14155551006"}])
    live_sessions.add(e1.sid)
    expect_error("third participant",
                 lambda: svc_ctx.sessions(e1.sid).participants.create(identifier="+14155551007"),
                 400, 80609)
    e2 = svc_ctx.sessions.create(unique_name="errs-2")
    live_sessions.add(e2.sid)
    e2_parts = svc_ctx.sessions(e2.sid).participants
    expect_error("identifier that is not a number",
                 lambda: e2_parts.create(identifier="not-a-number"), 400, 80404)
    expect_error("explicit proxy_identifier not in the pool",
                 lambda: e2_parts.create(identifier="+14155551008", proxy_identifier=NOT_IN_POOL),
                 400, 80605)
    e2_parts.create(identifier="+14155551008")
    expect_error("the same identifier twice in one session",
                 lambda: e2_parts.create(identifier="+14155551008"), 400, 80103)

    expect_error("duplicate phone number in the service",
                 lambda: svc_ctx.phone_numbers.create(phone_number=POOL[0]), 400, 80104)
    busy = next((n for n, c in in_use_by_number().items() if c and c > 0), None)
    check(busy is not None, "some pool number should be in use at this point")
    expect_error(f"delete phone number {busy} while in use",
                 lambda: svc_ctx.phone_numbers(pns[busy].sid).delete(), 400, 80611)
    eq(svc_ctx.phone_numbers(pns[busy].sid).fetch().phone_number, busy,
       "a number refused deletion is still in the pool")
    spare = svc_ctx.phone_numbers.create(phone_number=SPARE)
    eq(svc_ctx.phone_numbers(spare.sid).delete_with_http_info().status_code, 204,
       "HTTP status of deleting an unused phone number")
    expect_error("fetch a deleted phone number",
                 lambda: svc_ctx.phone_numbers(spare.sid).fetch(), 404, 20404)

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    _, code = expect_error("session create with date_expiry in the past",
                           lambda: svc_ctx.sessions.create(unique_name="errs-past",
                                                           date_expiry=past),
                           400, None)
    check(code is not None, "a past date_expiry error must carry a Twilio error code")
    print(f"   info: past date_expiry -> code {code}")

    # -- 11. Deletes ---------------------------------------------------------
    section("11. delete session (cascade) and service")
    resp = s2_ctx.delete_with_http_info()
    eq(resp.status_code, 204, "HTTP status of session delete")
    live_sessions.discard(s2.sid)
    expect_error("fetch a deleted session", lambda: s2_ctx.fetch(), 404, (20404, 80308))
    expect_error("fetch an interaction of a deleted session",
                 lambda: s2_ctx.interactions(mi.sid).fetch(), 404, None)
    expect_error("fetch a participant of a deleted session",
                 lambda: s2_ctx.participants(carol.sid).fetch(), 404, None)
    remaining = {s.sid for s in svc_ctx.sessions.list(page_size=100, limit=total + 50)}
    eq(remaining, live_sessions, "sessions listed after one was deleted")

    eq(svc_ctx.delete_with_http_info().status_code, 204, "HTTP status of service delete")
    expect_error("fetch the deleted service by sid", lambda: svc_ctx.fetch(), 404, 20404)
    expect_error("fetch the deleted service by unique_name",
                 lambda: proxy.services(SERVICE_NAME).fetch(), 404, 20404)
    # The name and the numbers are free again (reference 3.1 / 3.2).
    svc2 = proxy.services.create(unique_name=SERVICE_NAME)
    svc2.phone_numbers.create(phone_number=POOL[0])
    eq(proxy.services(svc2.sid).delete_with_http_info().status_code, 204,
       "HTTP status of deleting the re-created service")

    # Informational: status callbacks from the message interaction, if any.
    deadline = time.monotonic() + 3
    while not sink.received and time.monotonic() < deadline:
        time.sleep(0.1)
    validator = RequestValidator(auth_token)
    for path, headers, body in sink.received[:5]:
        params = dict(parse_qsl(body, keep_blank_values=True))
        ok = validator.validate(sink.url, params, header(headers, "X-Twilio-Signature") or "")
        print(f"   info: callback {params.get('interactionSid')} "
              f"outbound={params.get('outboundResourceStatus')} signature_valid={ok}")
    print(f"   info: {len(sink.received)} status callback(s) received")
    sink.close()

    STATE["sections"].append(STATE["section"])


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------
def usage(msg):
    print(f"usage: {sys.argv[0]} BASE_URL ACCOUNT_SID AUTH_TOKEN\n{msg}", file=sys.stderr)
    sys.exit(2)


def main():
    if len(sys.argv) != 4:
        usage("expected 3 arguments")
    base, account_sid, auth_token = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    parsed = urlparse(base)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.path:
        usage(f"BASE_URL must look like http://127.0.0.1:PORT, got {base!r}")
    host = parsed.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        usage(f"BASE_URL must be a loopback address, got {host!r}")

    def on_timeout(signum, frame):
        print(f"FAIL [{STATE['section']}]: run exceeded {WALL_CLOCK_LIMIT_S}s", flush=True)
        os._exit(1)

    signal.signal(signal.SIGALRM, on_timeout)
    signal.alarm(WALL_CLOCK_LIMIT_S)

    started = time.monotonic()
    try:
        run(base, account_sid, auth_token)
    except CheckFailed as exc:
        print(f"FAIL [{STATE['section']}]: {exc}", flush=True)
    except (TwilioRestException, TwilioServiceException) as exc:
        print(f"FAIL [{STATE['section']}]: unexpected API error: HTTP {exc.status} "
              f"code {exc.code} on {exc.method} {exc.uri}: "
              f"{getattr(exc, 'msg', None) or getattr(exc, 'title', '')}", flush=True)
    except TwilioException as exc:
        resp = exc.args[1] if len(exc.args) > 1 else None
        if resp is not None and hasattr(resp, "status_code"):
            print(f"FAIL [{STATE['section']}]: unexpected API error on a list page: "
                  f"HTTP {resp.status_code} {resp.text[:300]}", flush=True)
        else:
            hint = (" (a list response must name its array in meta.key)"
                    if "deserialized" in str(exc) else "")
            print(f"FAIL [{STATE['section']}]: library error: {exc}{hint}", flush=True)
    except Exception as exc:  # connection refused, bad JSON, ...
        traceback.print_exc()
        print(f"FAIL [{STATE['section']}]: {type(exc).__name__}: {exc}", flush=True)
    else:
        signal.alarm(0)
        n = len(STATE["sections"])
        print(f"PASS: {n} sections, {STATE['checks']} checks, "
              f"{len(GuardedHttpClient.sent)} requests in {time.monotonic() - started:.1f}s "
              f"against {base} with twilio-python {twilio.__version__} "
              f"(service, phone numbers, sessions, participants, exclusivity, paging, "
              f"close/re-open, message interactions, soft delete, errors, deletes)")
        print(f"twilio_flow: {n} passed, 0 failed")
        sys.exit(0)
    signal.alarm(0)
    done = len(STATE["sections"])
    print(f"twilio_flow: {done} passed, 1 failed")
    sys.exit(1)


if __name__ == "__main__":
    main()
