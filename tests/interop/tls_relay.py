#!/usr/bin/env python3
"""A TLS endpoint on Python's ssl (OpenSSL) relaying to or from plain TCP, for peers that
speak only plain TCP (Debian's SIPp is built without TLS; the tests' own SMSC):

  tls_relay.py server CERT KEY TARGET [CLIENT_CA]
      accepts TLS (requiring a client certificate signed by CLIENT_CA when given) and
      relays each connection to 127.0.0.1:TARGET in plain text: what a carrier's TLS
      endpoint looks like to maskd. Prints `peer CN VERSION` for each handshake (CN `-`
      without a client certificate), or `handshake failed`.
  tls_relay.py plain TARGET
      plain TCP in and out (the same relaying without TLS, for comparisons).
  tls_relay.py client CA TARGET [CERT KEY]
      accepts plain TCP and relays each connection over TLS to 127.0.0.1:TARGET, verifying
      its certificate against CA for 127.0.0.1 and presenting CERT/KEY when given: a
      carrier's TLS client in front of a plain one. Prints `connected VERSION`, or
      `handshake failed`.

Listens on 127.0.0.1 on a free port, printed as the first line; runs until its standard
input closes. Each connection is two threads; at most MAX_CONNECTIONS are taken.
"""

import socket
import ssl
import sys
import threading

MAX_CONNECTIONS = 4096


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def relay(a, b):
    threading.Thread(target=pipe, args=(a, b), daemon=True).start()
    threading.Thread(target=pipe, args=(b, a), daemon=True).start()


def cn_of(conn):
    cert = conn.getpeercert()
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return "-"


def serve_tls(listener, ctx, target):
    for _ in range(MAX_CONNECTIONS):
        raw, _ = listener.accept()
        try:
            conn = ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print(f"handshake failed {type(e).__name__}", flush=True)
            raw.close()
            continue
        print(f"peer {cn_of(conn)} {conn.version()}", flush=True)
        try:
            up = socket.create_connection(("127.0.0.1", target), timeout=5)
        except OSError as e:
            print(f"target refused {type(e).__name__}", flush=True)
            conn.close()
            continue
        up.settimeout(None)
        relay(conn, up)


def serve_plain(listener, ctx, target):
    for _ in range(MAX_CONNECTIONS):
        conn, _ = listener.accept()
        try:
            raw = socket.create_connection(("127.0.0.1", target), timeout=5)
        except OSError as e:
            print(f"target refused {type(e).__name__}", flush=True)
            conn.close()
            continue
        try:
            up = raw if ctx is None else ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except (ssl.SSLError, OSError) as e:
            print(f"handshake failed {type(e).__name__}", flush=True)
            raw.close()
            conn.close()
            continue
        up.settimeout(None)
        print(f"connected {up.version() if ctx else 'plain'}", flush=True)
        relay(conn, up)


def main():
    mode = sys.argv[1]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    if mode == "plain":
        ctx, target = None, int(sys.argv[2])
        serve = serve_plain
    elif mode == "server":
        cert, key, target = sys.argv[2], sys.argv[3], int(sys.argv[4])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if len(sys.argv) > 5:
            ctx.load_verify_locations(sys.argv[5])
            ctx.verify_mode = ssl.CERT_REQUIRED
        serve = serve_tls
    else:
        ca, target = sys.argv[2], int(sys.argv[3])
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        if len(sys.argv) > 5:
            ctx.load_cert_chain(sys.argv[4], sys.argv[5])
        serve = serve_plain
    print(listener.getsockname()[1], flush=True)
    threading.Thread(target=serve, args=(listener, ctx, target), daemon=True).start()
    sys.stdin.read()


main()
