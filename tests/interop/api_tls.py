#!/usr/bin/env python3
"""Interop test: maskd's API over HTTPS with Twilio's Python library and a test CA; plain
HTTP on the same port gets nothing; the certificate is read again on SIGHUP, new connections
get the new one while an open keep-alive connection goes on working.

Usage: api_tls.py BASE_URL ACCOUNT TOKEN CA CERT KEY NEW_CERT NEW_KEY PID
"""

import base64
import http.client
import os
import shutil
import signal
import ssl
import sys
import time
import urllib.request

import requests
from twilio.rest import Client


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main(argv):
    base, account, token, ca, cert, key, new_cert, new_key, pid = argv[1:10]
    host, port = base.split("://")[1].split(":")
    port = int(port)
    os.environ["REQUESTS_CA_BUNDLE"] = ca

    client = Client(account, token)
    client.proxy.base_url = base
    svc = client.proxy.v1.services("shop").fetch()
    check(svc.unique_name == "shop", svc.unique_name)
    check(svc.url.startswith("https://"), svc.url)

    # Plain HTTP on the TLS port: no answer.
    try:
        r = requests.get(f"http://{host}:{port}/v1/Services", auth=(account, token), timeout=5)
        check(False, f"plain HTTP answered {r.status_code}")
    except requests.exceptions.RequestException:
        pass

    ctx = ssl.create_default_context(cafile=ca)
    auth = "Basic " + base64.b64encode(f"{account}:{token}".encode()).decode()

    def serial_of_new_connection():
        with ctx.wrap_socket(__import__("socket").create_connection((host, port), timeout=5),
                             server_hostname=host) as s:
            return s.getpeercert()["serialNumber"]

    before = serial_of_new_connection()
    kept = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
    kept.request("GET", "/v1/Services", headers={"Authorization": auth})
    r = kept.getresponse()
    check(r.status == 200, r.status)
    r.read()

    shutil.copyfile(new_cert, cert)
    shutil.copyfile(new_key, key)
    os.kill(int(pid), signal.SIGHUP)
    deadline = time.time() + 5
    after = before
    while after == before and time.time() < deadline:
        time.sleep(0.05)
        after = serial_of_new_connection()
    check(after != before, "new connections still get the old certificate")

    kept.request("GET", "/v1/Services", headers={"Authorization": auth})
    r = kept.getresponse()
    check(r.status == 200, f"the open connection after the reload: {r.status}")
    r.read()
    print("api tls ok")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
