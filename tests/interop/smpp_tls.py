#!/usr/bin/env python3
"""SMPP over TLS with python-smpplib (PyPI) on Python's ssl (OpenSSL): carrier A binds to
maskd's TLS listener, verifying maskd's certificate against a CA, and texts B's proxy number;
then it waits for B's answer, which maskd delivers over the same TLS bind (tests/smpp_tls.rs
plays carrier B on the plain listener).

Usage: smpp_tls.py HOST PORT CA A PA [CERT KEY]
  CA        PEM CA maskd's certificate must chain to (checked against HOST, an IP address)
  A, PA     A's real number and A's proxy number (digits, no '+')
  CERT KEY  a client certificate to present (maskd asks for one when smpp.tls.client_ca is set)

Prints one JSON line (the message id maskd gave, the answer's text and source) and exits 0;
exits 1 with a message on the first failed check. Every wait is bounded.
"""

import json
import socket
import ssl
import sys
import time

import smpplib.client
import smpplib.consts as C

DEADLINE_S = 20


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


class Tls:
    """What smpplib calls to wrap its socket: the context, with the name to verify."""

    def __init__(self, ctx, host):
        self.ctx, self.host = ctx, host

    def wrap_socket(self, sock):
        return self.ctx.wrap_socket(sock, server_hostname=self.host)


def main():
    host, port, ca, a, pa = sys.argv[1:6]
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if len(sys.argv) > 7:
        ctx.load_cert_chain(sys.argv[6], sys.argv[7])
    received = []
    sent = []
    c = smpplib.client.Client(host, int(port), timeout=2, ssl_context=Tls(ctx, host))
    c.set_message_received_handler(lambda pdu: received.append(pdu))
    c.set_message_sent_handler(lambda pdu: sent.append(pdu.message_id.decode()))
    try:
        c.connect()
        c.bind_transceiver(system_id="carrier-a", password="secret-a")
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        fail(f"bind over tls: {type(e).__name__}: {e}")
    if not isinstance(c._socket, ssl.SSLSocket):
        fail("the socket is not TLS")
    c.send_message(
        source_addr_ton=C.SMPP_TON_INTL,
        source_addr=a,
        dest_addr_ton=C.SMPP_TON_INTL,
        destination_addr=pa,
        short_message=b"hello over tls",
    )
    end = time.monotonic() + DEADLINE_S
    for _ in range(10_000):
        if sent and received:
            break
        if time.monotonic() > end:
            fail(f"timed out: submit_sm_resp {sent}, deliver_sm {len(received)}")
        try:
            c.read_once(auto_send_enquire_link=False)
        except socket.timeout:
            pass
    m = received[0]
    print(
        json.dumps(
            {
                "message_id": sent[0],
                "text": m.short_message.decode(),
                "source": m.source_addr.decode(),
                "cipher": c._socket.version(),
            }
        ),
        flush=True,
    )
    c.unbind()
    c.disconnect()


main()
