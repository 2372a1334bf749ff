#!/usr/bin/env python3
"""Interop test: API keys with Twilio's official Python library, as an app would use them.

With the account's auth token: create a key (`client.new_keys.create`, the secret shown
once), list and fetch keys (no secret), rename it. With the key (`Client(sid, secret,
account_sid)`): drive the Proxy API (create a session, list it) and read the 2010 API.
Then delete the key with the account's token, and check the key gets 401 (20003) at once.
A key cannot manage keys (403).

Usage: keys_flow.py BASE_URL ACCOUNT_SID AUTH_TOKEN SERVICE
Exit status: 0 when every check passed, 1 otherwise.
"""

import sys

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def at(client, base):
    client.api.base_url = base
    client.proxy.base_url = base
    return client


def main(argv):
    base, account, token, service = argv[1].rstrip("/"), argv[2], argv[3], argv[4]
    admin = at(Client(account, token), base)

    made = admin.new_keys.create(friendly_name="checkout-app")
    check(made.sid.startswith("SK") and len(made.sid) == 34, made.sid)
    check(made.secret and len(made.secret) == 32, "a 32-character secret")
    check(made.friendly_name == "checkout-app", made.friendly_name)

    listed = admin.keys.list()
    check([k.sid for k in listed] == [made.sid], [k.sid for k in listed])
    raw = admin.request("GET", f"{base}/2010-04-01/Accounts/{account}/Keys.json")
    check("secret" not in raw.text and made.secret not in raw.text, "no secret in the list")
    check(admin.keys(made.sid).fetch().friendly_name == "checkout-app", "fetch")
    check(admin.keys(made.sid).update(friendly_name="checkout").friendly_name == "checkout", "update")

    app = at(Client(made.sid, made.secret, account), base)
    session = app.proxy.v1.services(service).sessions.create(
        unique_name="by-key",
        participants=['{"Identifier": "+14155551001"}', '{"Identifier": "+14155552002"}'],
    )
    check(session.unique_name == "by-key", session.unique_name)
    names = [s.unique_name for s in app.proxy.v1.services(service).sessions.list()]
    check("by-key" in names, names)
    check(app.recordings.list(limit=5) == [], "the 2010 API with the key")
    try:
        app.new_keys.create(friendly_name="sneaky")
        check(False, "a key made a key")
    except TwilioRestException as e:
        check(e.status == 403, f"a key managing keys: {e.status}")

    admin.keys(made.sid).delete()
    check(admin.keys.list() == [], "deleted")
    try:
        app.proxy.v1.services(service).fetch()
        check(False, "a deleted key still works")
    except TwilioRestException as e:
        check(e.status == 401 and e.code == 20003, f"{e.status} {e.code}")
    wrong = at(Client(made.sid, "x" * 32, account), base)
    try:
        wrong.proxy.v1.services(service).fetch()
        check(False, "a wrong secret works")
    except TwilioRestException as e:
        check(e.status == 401, f"{e.status}")
    print("keys ok")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
