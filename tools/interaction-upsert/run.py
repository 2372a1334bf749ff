#!/usr/bin/env python3
"""Whether writing an interaction as an upsert (ON CONFLICT(sid) DO UPDATE) costs SQLite less
than the store's INSERT OR REPLACE (issue 17): the interactions table of src/store/schema.rs
with its indexes, 60,000 calls of two versions each (the call's first, then its completed
one a batch later), 100 per transaction, WAL; the best of three runs each, microseconds per
call. Python's sqlite3 module, so the figures include its overhead, the same for both.
Usage: tools/interaction-upsert/run.py   (writes to a temporary directory)
"""
import sqlite3, time, os, tempfile, shutil
cols = "sid,seq,session_sid,service_sid,data,type,in_participant,in_resource_sid,in_status,in_type,in_url,out_participant,out_resource_sid,out_status,out_type,out_url,message_participant,date_created,date_updated".split(',')
def setup(path):
    if os.path.exists(path): os.remove(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=OFF")
    c.executescript("""
CREATE TABLE interactions (
  sid TEXT PRIMARY KEY, seq INTEGER NOT NULL, session_sid TEXT NOT NULL,
  service_sid TEXT NOT NULL, data TEXT NOT NULL, type TEXT NOT NULL,
  in_participant TEXT, in_resource_sid TEXT, in_status TEXT, in_type TEXT, in_url TEXT,
  out_participant TEXT, out_resource_sid TEXT, out_status TEXT, out_type TEXT, out_url TEXT,
  message_participant TEXT, date_created INTEGER NOT NULL, date_updated INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE INDEX interactions_session ON interactions(session_sid, seq);
CREATE INDEX interactions_queued ON interactions(out_status) WHERE out_status = 'queued';
CREATE INDEX interactions_in_call ON interactions(in_resource_sid) WHERE type = 'voice';
CREATE INDEX interactions_out_call ON interactions(out_resource_sid) WHERE type = 'voice';
""")
    return c
def row(i, status, n):
    return ("KI%032x" % (0xabc000000 + i), i, "KC%032x" % 7, "KS%032x" % 1, '{"duration":"%d"}' % n if status=='completed' else '{}', 'voice',
            "KP%032x" % 1, "CA%032x" % (0x5000000 + 2*i), 'in-progress', 'Call', None,
            "KP%032x" % 2, "CA%032x" % (0x5000000 + 2*i+1), status, 'Call', None, None, 1700000000, 1700000000+n)
TMP = tempfile.mkdtemp()
ph = ",".join("?"*19)
stmts = {
 'replace': f"INSERT OR REPLACE INTO interactions VALUES ({ph})",
 'upsert_all': f"INSERT INTO interactions VALUES ({ph}) ON CONFLICT(sid) DO UPDATE SET " + ",".join(f"{c}=excluded.{c}" for c in cols[1:]),
}
for name, sql in stmts.items():
    best = None
    for rep in range(3):
        c = setup(os.path.join(TMP, f"{name}.db"))
        N = 60000
        # calls: first version (insert) then completed version (update) 100 rows later, in batches of 100
        t0 = time.perf_counter()
        for b in range(0, N, 100):
            c.execute("BEGIN")
            c.executemany(sql, [row(i, 'in-progress', 0) for i in range(b, b+100)])
            if b >= 100:
                c.executemany(sql, [row(i, 'completed', 5) for i in range(b-100, b)])
            c.execute("COMMIT")
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
        c.close()
    print(name, f"{best/N*1e6:.1f} us per call (two writes)")
shutil.rmtree(TMP)
