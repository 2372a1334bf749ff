"""Checks maskd's X-Twilio-Signature values with Twilio's own RequestValidator.

Usage: callbacks_check.py CASES.json AUTH_TOKEN
CASES.json: [{"url": ..., "params": [[name, value], ...], "signature": ...}, ...]
Exits 1 unless every case validates, and also checks that a tampered case does not.
"""
import json
import sys

from twilio.request_validator import RequestValidator


def main():
    cases = json.load(open(sys.argv[1]))
    validator = RequestValidator(sys.argv[2])
    if not cases:
        print("no cases")
        return 1
    for c in cases:
        params = {k: v for k, v in c["params"]}
        if not validator.validate(c["url"], params, c["signature"]):
            print("INVALID", c["url"], c["signature"])
            return 1
        tampered = dict(params)
        tampered["interactionSid"] = "KI" + "0" * 32
        if validator.validate(c["url"], tampered, c["signature"]):
            print("tampered parameters still validate")
            return 1
    print(f"{len(cases)} signatures valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
