#!/usr/bin/env python3
"""Interop test: two carriers bind to maskd's SMPP listener with python-smpplib (PyPI) and
exchange masked messages through a session created by the caller (tests/interop_smpp.rs).

Usage: smpp_flow.py HOST PORT A B PA PB
  A, B    the participants' real numbers (digits, no '+'); A binds as carrier-a, B as carrier-b
  PA, PB  their proxy numbers: A texts PA to reach B; B's messages come from PB

Checks (each bounded in time): masked exchange both ways in GSM 03.38 and UCS-2, a
concatenated message (two parts, 8-bit UDH reference), carrier B's deliver_sm_resp (ESME_ROK,
empty message_id as SMPP 3.4 §4.6.2 prescribes) that maskd takes as final delivery and turns
into its own DELIVRD receipt to carrier A, a wrong password (ESME_RINVPASWD), an unknown
system_id (ESME_RINVSYSID), an out-of-session message (ESME_ROK, not forwarded), an opt-out
keyword (ESME_ROK, not forwarded) and an unknown command id (generic_nack ESME_RINVCMDID).
Prints one JSON line with what the caller checks through the REST API, then exits 0; exits 1
with a message on the first failed check.
"""

import json
import socket
import struct
import sys
import time

import smpplib.client
import smpplib.consts as C
import smpplib.exceptions
import smpplib.smpp

DEADLINE_S = 20


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Carrier(smpplib.client.Client):
    """A carrier's ESME bind: answers deliver_sm with an empty message_id (SMPP 3.4 §4.6.2)."""

    def __init__(self, name, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = name
        self.received = []
        self.sent_ids = []
        self.count = 0
        self.set_message_sent_handler(lambda pdu: self.sent_ids.append(pdu.message_id.decode()))

    def _message_received(self, pdu):
        self.received.append(pdu)
        self.count += 1
        resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self, status=0, message_id="")
        resp.sequence = pdu.sequence
        self.send_pdu(resp)


def pump(client, pred, what, seconds=DEADLINE_S):
    """Reads PDUs until pred() holds; bounded by time and count."""
    end = time.monotonic() + seconds
    for _ in range(10_000):
        if pred():
            return
        if time.monotonic() > end:
            break
        try:
            client.read_once(auto_send_enquire_link=False)
        except socket.timeout:
            pass
    fail(f"timed out waiting for {what}")


def bind(name, host, port, system_id, password):
    c = Carrier(name, host, port, timeout=2, allow_unknown_opt_params=True)
    c.connect()
    c.bind_transceiver(system_id=system_id, password=password)
    return c


def bind_error(host, port, system_id, password):
    c = smpplib.client.Client(host, port, timeout=5)
    c.connect()
    try:
        c.bind_transceiver(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as e:
        return e.args[1]
    finally:
        c.disconnect()
    return 0


def text_of(pdu):
    data = pdu.short_message or b""
    if pdu.data_coding == 8:
        return data.decode("utf-16-be")
    return data.decode("ascii", "replace")


def main():
    if len(sys.argv) != 7:
        fail("usage: smpp_flow.py HOST PORT A B PA PB")
    host, port = sys.argv[1], int(sys.argv[2])
    A, B, PA, PB = sys.argv[3:7]
    check(host in ("127.0.0.1", "::1", "localhost"), "loopback only")

    # Refused binds.
    check(bind_error(host, port, "carrier-a", "wrong") == C.SMPP_ESME_RINVPASWD, "wrong password must be ESME_RINVPASWD")
    check(bind_error(host, port, "nobody", "x") == C.SMPP_ESME_RINVSYSID, "unknown system_id must be ESME_RINVSYSID")

    a = bind("a", host, port, "carrier-a", "secret-a")
    b = bind("b", host, port, "carrier-b", "secret-b")

    # 1. A -> B in GSM 03.38, asking for a receipt.
    a.send_message(source_addr_ton=1, source_addr_npi=1, source_addr=A, dest_addr_ton=1, dest_addr_npi=1,
                   destination_addr=PA, short_message=b"Hello B", data_coding=0, registered_delivery=1)
    pump(a, lambda: len(a.sent_ids) == 1, "submit_sm_resp for the GSM message")
    maskd_id = a.sent_ids[0]
    check(maskd_id.startswith("SM") and len(maskd_id) == 34, f"maskd message_id {maskd_id!r}")
    pump(b, lambda: len(b.received) == 1, "deliver_sm at carrier B")
    m = b.received[0]
    check(m.source_addr.decode() == PB, f"B must see the message from PB, saw {m.source_addr!r}")
    check(m.destination_addr.decode() == B, f"delivered to B's real number, got {m.destination_addr!r}")
    check(text_of(m) == "Hello B", f"text {text_of(m)!r}")
    check(A not in repr(vars(m)), "A's real number leaked to carrier B")

    # 2. Carrier B's bind took it (ESME_ROK): final delivery; maskd tells A about its own id.
    pump(a, lambda: any(p.esm_class & 0x3C == 0x04 for p in a.received), "maskd's receipt at carrier A")
    r = [p for p in a.received if p.esm_class & 0x3C == 0x04][0]
    check((r.receipted_message_id or b"").decode() == maskd_id, f"receipt for {maskd_id}, got {r.receipted_message_id!r}")
    check(b"stat:DELIVRD" in (r.short_message or b""), "receipt says DELIVRD")
    check(r.destination_addr.decode() == A and r.source_addr.decode() == PA, "receipt goes to A from PA")

    # 3. B -> A in UCS-2.
    b.send_message(source_addr_ton=1, source_addr_npi=1, source_addr=B, destination_addr=PB,
                   short_message="Привет, A".encode("utf-16-be"), data_coding=8)
    pump(a, lambda: any(p.esm_class & 0x3C == 0 for p in a.received), "UCS-2 deliver_sm at carrier A")
    m = [p for p in a.received if p.esm_class & 0x3C == 0][0]
    check(m.source_addr.decode() == PA and m.destination_addr.decode() == A, "A sees B's message from PA")
    check(m.data_coding == 8 and text_of(m) == "Привет, A", f"UCS-2 text {text_of(m)!r}")

    # 4. A concatenated message from A: two parts, 8-bit reference 0x2A.
    before = len(b.received)
    for seq, part in ((1, b"This is a long message "), (2, b"in two parts.")):
        udh = bytes([5, 0, 3, 0x2A, 2, seq])
        a.send_message(source_addr=A, destination_addr=PA, esm_class=0x40, data_coding=0, short_message=udh + part)
    pump(b, lambda: len(b.received) == before + 2, "both parts at carrier B")
    parts = b.received[before:]
    check(all(p.esm_class & 0x40 for p in parts), "UDHI bit carried over")
    # Sent back to back without waiting for answers: they arrive in the order A sent them.
    udhs = [p.short_message[:6] for p in parts]
    check(udhs == [bytes([5, 0, 3, 0x2A, 2, 1]), bytes([5, 0, 3, 0x2A, 2, 2])], f"UDH carried over part by part, in order: {udhs}")
    check([p.short_message[6:] for p in parts] == [b"This is a long message ", b"in two parts."], "part texts")

    # 5. Opt-out keyword and out-of-session: acknowledged, never forwarded.
    a.send_message(source_addr=A, destination_addr=PA, short_message=b"STOP")
    stranger = "14155559999"
    a.send_message(source_addr=stranger, destination_addr=PA, short_message=b"who is this?")
    pump(a, lambda: len(a.sent_ids) == 5, "answers to the opt-out and out-of-session messages")
    check(all(i.startswith("SM") for i in a.sent_ids), "ESME_ROK with a message_id for each")

    # 6. An unknown command id on a raw socket: generic_nack with ESME_RINVCMDID.
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(struct.pack(">IIII", 16, 0x00000099, 0, 77))
    hdr = s.recv(16)
    s.close()
    check(len(hdr) == 16, "an answer to the unknown command")
    length, cid, status, seq = struct.unpack(">IIII", hdr)
    check((cid, status, seq) == (0x80000000, C.SMPP_ESME_RINVCMDID, 77), f"generic_nack RINVCMDID, got {cid:#x} {status:#x} {seq}")

    # Nothing else reached B (the opt-out and the stranger's message were not forwarded):
    # one more message proves the link is live and is the next thing B sees.
    before = len(b.received)
    a.send_message(source_addr=A, destination_addr=PA, short_message=b"last")
    pump(b, lambda: len(b.received) > before, "the last message at B")
    check(text_of(b.received[before]) == "last", f"B saw {text_of(b.received[before])!r} before 'last'")

    for c in (a, b):
        c.unbind()
        c.disconnect()
    print(json.dumps({"maskd_message_id": maskd_id, "received_by_b": len(b.received), "received_by_a": len(a.received)}))


if __name__ == "__main__":
    main()
