#!/usr/bin/env python3
"""Replays the PROTOS c07-sip suite (4,527 INVITEs with one element mutated each) against a
running maskd SIP listener, from ../shared/corpora/protos-c07-sip in place (GPLv2 data, never
copied into the project).

Usage: protos_replay.py CORPUS_DIR SIP_HOST SIP_PORT METRICS_URL MASKD_PID TRUNK_PORT PROXY CALLER

Checks: every case gets an answer or is dropped, never a leg B (maskd_sip_calls_started_total
stays 0: no case is from a session participant); maskd keeps serving (OPTIONS answered 200
after the run, and a valid INVITE from the session's caller reaches the trunk as leg B);
no crash (the pid lives); memory back near its start once transactions drain. Prints a
summary line; exits 1 on a failed check. Every wait is bounded.
"""
import collections, os, re, socket, sys, time, urllib.request, uuid


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def split_case(data):
    out, i = [], 0
    while i < len(data) and len(out) < 2:
        sp = data.index(b" ", i)
        n = int(data[i:sp])
        out.append(data[sp + 1 : sp + 1 + n])
        i = sp + 1 + n
    return out


def fill(msg, port, proxy, caller):
    tok = uuid.uuid4().hex[:16].encode()
    subs = {
        b"<To>": proxy.encode() + b"@127.0.0.1",
        b"<From>": caller.encode() + b"@127.0.0.1",
        b"<From-Address>": b"127.0.0.1",
        b"<From-IP>": b"127.0.0.1",
        b"<Local-Port>": str(port).encode(),
        b"<Branch-ID>": tok,
        b"<Call-ID>": tok,
        b"<CSeq>": b"1",
        b"<Teardown-Method>": b"CANCEL",
    }
    for k, v in subs.items():
        msg = msg.replace(k, v)
    head, sep, body = msg.partition(b"\r\n\r\n")
    return head.replace(b"<Content-Length>", str(len(body)).encode()) + sep + body


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(url, name):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main():
    corpus, host, port, metrics_url, pid, trunk_port, proxy, caller = sys.argv[1:9]
    port, pid, trunk_port = int(port), int(pid), int(trunk_port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.003)
    local = sock.getsockname()[1]
    start_rss = rss_kib(pid)
    start_live = metric(metrics_url, "maskd_heap_live_bytes")
    if start_live <= 0:
        fail("maskd_heap_live_bytes missing (the replay needs a debug build)")
    statuses = collections.Counter()
    files = sorted(os.listdir(corpus))

    def replay():
        sock.settimeout(0.003)
        for name in files:
            msgs = split_case(open(os.path.join(corpus, name), "rb").read())
            for m in msgs:
                try:
                    sock.sendto(fill(m, local, "+19995550000", "+19995559999"), (host, port))
                except OSError:
                    statuses["too long for one datagram"] += 1
                    continue
                for _ in range(4):  # drain what came back, bounded
                    try:
                        data, _ = sock.recvfrom(65535)
                    except socket.timeout:
                        break
                    mm = re.match(rb"SIP/2\.0 (\d{3})", data)
                    statuses[mm.group(1).decode() if mm else "other"] += 1

    def drained():
        # Memory once the transactions of the replay have expired and the B2BUA's once-a-second
        # sweep has given their tables' room back: live heap bytes (counted by the debug
        # build's allocator) read until they settle, and the resident set size.
        deadline = time.monotonic() + 60
        while metric(metrics_url, "maskd_sip_transactions_active") > 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        if metric(metrics_url, "maskd_sip_transactions_active") > 2:
            fail("transactions did not drain")
        live = metric(metrics_url, "maskd_heap_live_bytes")
        for _ in range(20):
            time.sleep(0.5)
            now = metric(metrics_url, "maskd_heap_live_bytes")
            if abs(now - live) < 64 * 1024:
                break
            live = now
        return int(now) // 1024, rss_kib(pid)

    t0 = time.monotonic()
    replay()
    elapsed = time.monotonic() - t0
    if not os.path.exists(f"/proc/{pid}"):
        fail("maskd died during the replay")
    # Still serving: OPTIONS is answered.
    opts = f"OPTIONS sip:{proxy}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKopt{uuid.uuid4().hex[:8]}\r\nFrom: <sip:{caller}@127.0.0.1>;tag=o1\r\nTo: <sip:{proxy}@127.0.0.1>\r\nCall-ID: opt-{uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    sock.settimeout(2)
    sock.sendto(opts.encode(), (host, port))
    got = b""
    # Retransmitted answers to the replay's INVITEs (nobody ACKs them) may come first.
    for _ in range(2000):
        got, _ = sock.recvfrom(65535)
        if b"OPTIONS" in got:
            break
    if not got.startswith(b"SIP/2.0 200"):
        fail(f"OPTIONS after the replay: {got[:40]!r}")
    if metric(metrics_url, "maskd_sip_calls_started_total") != 0:
        fail("a PROTOS case produced a leg B")
    # A valid call from the session's caller still goes through to the trunk.
    trunk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    trunk.bind(("127.0.0.1", trunk_port))
    trunk.settimeout(5)
    case0 = split_case(open(os.path.join(corpus, files[0]), "rb").read())[0]
    sock.sendto(fill(case0, local, proxy, caller), (host, port))
    leg_b, _ = trunk.recvfrom(65535)
    if not leg_b.startswith(b"INVITE sip:"):
        fail(f"no leg B for a valid call after the replay: {leg_b[:40]!r}")
    # Memory: the allocator (mimalloc) keeps what the first replay freed for reuse, so RSS
    # after it stays near its high-water mark. A second full replay must then add nothing
    # beyond noise: what grows again is a leak.
    first_live, first_rss = drained()
    replay()
    second_live, second_rss = drained()
    extra = []
    for _ in range(int(os.environ.get("PROTOS_EXTRA_PASSES", "0"))):
        replay()
        extra.append(drained())
    print(
        f"protos: {len(files)} cases in {elapsed:.1f}s (replayed twice); answers {dict(statuses)}; "
        f"transactions left {metric(metrics_url, 'maskd_sip_transactions_active'):.0f}; "
        f"live heap {int(start_live) // 1024} -> {first_live} KiB after the first replay -> "
        f"{second_live} KiB after the second; rss {start_rss} -> {first_rss} -> {second_rss} KiB"
        + "".join(f"; then live {l} KiB, rss {r} KiB" for l, r in extra)
    )
    # Live heap: what the daemon holds once the replay's transactions are gone. The first
    # replay may leave lasting room behind (SQLite's page cache, metric series, the socket
    # buffers' pools); a second identical replay must add nothing beyond noise.
    if second_live - first_live > 1024:
        fail(f"live heap grew by {second_live - first_live} KiB during the second replay")
    if first_live - int(start_live) // 1024 > 2 * 1024:
        fail(f"live heap grew by {first_live - int(start_live) // 1024} KiB during the first replay")
    # Resident set size: the allocator keeps freed pages for reuse, so this only catches
    # gross growth.
    if second_rss - first_rss > 32 * 1024:
        fail(f"memory grew by {second_rss - first_rss} KiB during the second replay")
    if first_rss - start_rss > 96 * 1024:
        fail(f"memory grew by {first_rss - start_rss} KiB during the first replay")


if __name__ == "__main__":
    main()
