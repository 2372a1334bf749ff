#!/usr/bin/env python3
"""Interop test: read, download and delete maskd's recordings with Twilio's official
Python library, as an application would against Twilio's 2010-04-01 API.

Usage:
    python recordings_flow.py BASE_URL ACCOUNT_SID AUTH_TOKEN [CALL_SID]

    BASE_URL     e.g. http://127.0.0.1:8080 (loopback only); the daemon's api.public_url
    CALL_SID     a call expected to have at least one recording (or env MASKD_CALL_SID)

The daemon must hold at least one completed recording (two or more exercise paging).
How the library is pointed at maskd: `client.api.base_url = BASE_URL`; twilio-python
builds every 2010 URL as base_url + "/2010-04-01/Accounts/{AccountSid}/...", and follows
the 2010 list envelope's relative `next_page_uri` through the same domain.
Exit status: 0 when every check passed, 1 on a failed check, 2 on bad usage.
"""

import ipaddress
import os
import struct
import sys
from urllib.parse import urlparse

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    base, account, token = argv[1].rstrip("/"), argv[2], argv[3]
    call_sid = argv[4] if len(argv) > 4 else os.environ.get("MASKD_CALL_SID")
    host = urlparse(base).hostname or ""
    try:
        check(ipaddress.ip_address(host).is_loopback, "BASE_URL must be loopback")
    except ValueError:
        check(host == "localhost", "BASE_URL must be loopback")

    client = Client(account, token)
    client.api.base_url = base

    recs = client.recordings.list(limit=1000)
    check(len(recs) >= 1, f"expected recordings, got {len(recs)}")
    for r in recs:
        check(r.sid.startswith("RE") and len(r.sid) == 34, f"sid {r.sid}")
        check(r.account_sid == account, f"account_sid {r.account_sid}")
        check(r.channels == 2, f"channels {r.channels}")
        check(r.status in ("in-progress", "completed", "absent"), f"status {r.status}")
        check(r.start_time is not None and r.start_time.tzinfo is not None,
              f"start_time parsed as an aware datetime: {r.start_time!r}")
    if len(recs) >= 2:
        paged = list(client.recordings.stream(page_size=1, limit=1000))
        check([r.sid for r in paged] == [r.sid for r in recs],
              "page_size=1 walks the same recordings in the same order")
        page = client.recordings.page(page_size=1)
        check(page.next_page_url is not None, "a next page exists")
        check(len(list(page.next_page())) == 1, "next page holds one")

    if call_sid:
        mine = client.recordings.list(call_sid=call_sid)
        check(len(mine) >= 1 and all(r.call_sid == call_sid for r in mine),
              f"CallSid filter: {[r.call_sid for r in mine]}")
        via_call = client.calls(call_sid).recordings.list()
        check(sorted(r.sid for r in via_call) == sorted(r.sid for r in mine),
              "Calls/{CallSid}/Recordings lists the same")
        target = mine[0]
    else:
        target = recs[-1]

    rec = client.recordings(target.sid).fetch()
    check(rec.sid == target.sid and rec.call_sid == target.call_sid, "fetch")
    check(rec.status == "completed", f"status {rec.status}")
    check(int(rec.duration) >= 0, f"duration {rec.duration!r}")

    url = f"{base}/2010-04-01/Accounts/{account}/Recordings/{rec.sid}.wav"
    resp = requests.get(url, auth=(account, token), timeout=30)
    check(resp.status_code == 200, f"wav: {resp.status_code}")
    check(resp.headers.get("Content-Type") == "audio/x-wav",
          f"content type {resp.headers.get('Content-Type')}")
    b = resp.content
    check(len(b) >= 44 and b[0:4] == b"RIFF" and b[8:12] == b"WAVE", "RIFF/WAVE header")
    fmt_tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", b[20:36])
    check((fmt_tag, channels, rate, bits) == (1, 2, 8000, 16),
          f"PCM stereo 8 kHz 16-bit, got {(fmt_tag, channels, rate, bits)}")
    data_len = struct.unpack("<I", b[40:44])[0]
    check(data_len == len(b) - 44, f"data size {data_len} vs {len(b) - 44}")
    check(abs(data_len / 32000 - int(rec.duration)) <= 1, "duration matches the file")

    check(client.recordings(rec.sid).delete() is True, "delete")
    try:
        client.recordings(rec.sid).fetch()
        raise AssertionError("fetch after delete succeeded")
    except TwilioRestException as e:
        check(e.status == 404, f"fetch after delete: {e.status}")
        check(e.code == 20404, f"code {e.code}")
    print(f"ok: {len(recs)} recordings, {rec.sid} downloaded and deleted")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
