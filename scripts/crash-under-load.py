#!/usr/bin/env python3
"""Acknowledged messages survive a crash under load (a manual check, see BENCHMARKS.md).

    python3 scripts/crash-under-load.py target/release/parley [SECONDS]

Starts `parley serve` on a fresh data directory under /tmp/crash, posts customer messages from
48 threads into 300 conversations for SECONDS (default 12) — long enough for the WAL to reach
its limit and start over several times — kills the server with SIGKILL, starts it again and
looks every acknowledged message up. Exits 1 if any is missing. Loopback only; stops by itself.
"""
import http.client, json, os, random, signal, subprocess, sys, threading, time, shutil

BIN = sys.argv[1]
PORT = 18181
DATA = "/tmp/crash/d"
os.makedirs("/tmp/crash", exist_ok=True)
open("/tmp/crash/server.log", "w").close()  # both starts of the server log here, this run only
ADMIN = "adm_" + "x" * 40
shutil.rmtree(DATA, ignore_errors=True)

def start():
    env = dict(os.environ, PARLEY_LOG="warn,parley_store=debug")
    p = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{PORT}", "--data-dir", DATA, "--admin-token", ADMIN],
                         stdout=subprocess.DEVNULL, stderr=open("/tmp/crash/server.log", "a"), env=env)
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2); c.request("GET", "/readyz"); r = c.getresponse(); r.read()
            if r.status == 200: return p
        except OSError: pass
        time.sleep(0.1)
    raise SystemExit("server did not start")

def call(conn, method, path, token, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse(); data = r.read()
    return r.status, (json.loads(data) if data else None)

server = start()
c = http.client.HTTPConnection("127.0.0.1", PORT)
st, acct = call(c, "POST", "/v1/accounts", ADMIN, {"name": "Crash"}); assert st == 201, (st, acct)
key = acct["api_key"]["secret"]
st, integ = call(c, "POST", "/v1/integrations", key, {"name": "API", "type": "api"}); assert st == 201, (st, integ)
convs = []
for i in range(300):
    st, conv = call(c, "POST", "/v1/conversations", key, {"integration_id": integ["id"], "customer": {"external_id": f"c{i}"}})
    assert st == 201, (st, conv); convs.append(conv["id"])

acked = []; lock = threading.Lock(); stop = threading.Event()
def worker(n):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    rnd = random.Random(n)
    while not stop.is_set():
        cid = rnd.choice(convs)
        try:
            st, m = call(conn, "POST", f"/v1/conversations/{cid}/messages", key,
                         {"author": {"type": "customer"}, "content": {"type": "text", "text": "hello " * rnd.randint(1, 20)}})
        except (OSError, http.client.HTTPException):
            return
        if st == 201:
            with lock: acked.append((cid, m["id"]))
threads = [threading.Thread(target=worker, args=(n,)) for n in range(48)]
for t in threads: t.start()
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 12)
wal = os.path.getsize(os.path.join(DATA, [f for f in os.listdir(DATA) if f.endswith("-wal")][0]))
server.send_signal(signal.SIGKILL); server.wait()
stop.set()
for t in threads: t.join()
print(f"acknowledged before the kill: {len(acked)}; WAL file {wal/2**20:.0f} MiB")

server = start()
c = http.client.HTTPConnection("127.0.0.1", PORT)
found = set()
for cid in convs:
    after = 0
    while True:
        st, page = call(c, "GET", f"/v1/conversations/{cid}/messages?limit=100&after={after}", key)
        assert st == 200, (st, page)
        for m in page["data"]: found.add(m["id"])
        if not page["data"] or len(page["data"]) < 100: break
        after = page["data"][-1]["seq"]
missing = [m for _, m in acked if m not in found]
server.send_signal(signal.SIGTERM); server.wait()
starts = open("/tmp/crash/server.log").read().count("the WAL starts over")
print(f"found after restart: {len(found)}; acknowledged and missing: {len(missing)}; WAL start-overs logged: {starts}")
sys.exit(1 if missing else 0)
