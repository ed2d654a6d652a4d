#!/usr/bin/env python3
"""Submit-and-wait against polling, end to end, same run (issue 13's figure).

Per round, one broker (1 shard, on CPU 0; the generator on CPU 1) runs `loadtest run --scenario
e2e` (submit, then poll /response every --poll-interval until final) and then `--scenario wait`
(submit with `Prefer: wait=N`, answered once final). Prints completed/s and the e2e p50 of each;
with `--redis` the broker runs on a redis-server started here (a free port, a temp dir), and
each run also prints Redis commands per completed request (INFO commandstats delta / completed).

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/wait-vs-poll.py [--redis] [ROUNDS=3] [SECONDS=5]
"""
import json, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER = f"{ROOT}/target/release/openhqm"
LT = f"{ROOT}/target/release/loadtest"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_port(p):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", p), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {p} never opened")


def redis_calls(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"],
                         capture_output=True, text=True).stdout
    return sum(int(m) for m in re.findall(r"calls=(\d+)", out))


args = [a for a in sys.argv[1:] if a != "--redis"]
use_redis = "--redis" in sys.argv
rounds = int(args[0]) if args else 3
secs = int(args[1]) if len(args) > 1 else 5

redis = None
tmp = tempfile.mkdtemp(prefix="openhqm-wait-vs-poll-")
broker_cmd = [BROKER, "--host", "127.0.0.1", "--shards", "1", "--cpus", "0", "--log-level", "warn"]
if use_redis:
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--dir", tmp, "--save", "",
                              "--appendonly", "yes", "--appendfsync", "always"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(rport)
    broker_cmd += ["--queue.type", "redis", "--queue.redis_url", f"redis://127.0.0.1:{rport}"]
res = {"e2e": [], "wait": []}
try:
    for i in range(rounds):
        port = free_port()
        b = subprocess.Popen(broker_cmd + ["--port", str(port)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            wait_port(port); time.sleep(0.5)
            for sc in ("e2e", "wait"):
                c0 = redis_calls(rport) if use_redis else 0
                out = subprocess.run([LT, "run", "--url", f"http://127.0.0.1:{port}", "--scenario", sc,
                                      "--cpus", "1", "--duration", f"{secs}s", "--json", "--no-progress"],
                                     capture_output=True, text=True, timeout=secs + 120)
                c1 = redis_calls(rport) if use_redis else 0
                r = json.loads(out.stdout)
                cmds = (c1 - c0) / max(1, r["completed"]) if use_redis else float("nan")
                problems = r["lost_ids"] + r["bad_responses"] + r["non_2xx"]
                res[sc].append((r["completed_per_s"], r["latency_us"]["e2e"]["p50"], cmds, problems))
                print(f"round {i+1} {sc:4}: {r['completed_per_s']:,.0f} completed/s, e2e p50 "
                      f"{r['latency_us']['e2e']['p50']} us, requests per completed "
                      f"{r['requests'] / max(1, r['completed']):.2f}"
                      + (f", Redis commands per completed {cmds:.2f}" if use_redis else "")
                      + f", problems {problems}", flush=True)
        finally:
            b.terminate(); b.wait()
finally:
    if redis:
        redis.terminate(); redis.wait()
    shutil.rmtree(tmp, ignore_errors=True)
med = lambda sc, k: statistics.median(x[k] for x in res[sc])
print(f"median e2e {med('e2e', 0):,.0f}/s p50 {med('e2e', 1):.0f} us; wait {med('wait', 0):,.0f}/s "
      f"p50 {med('wait', 1):.0f} us" + (f"; Redis commands per completed: e2e {med('e2e', 2):.2f}, "
                                        f"wait {med('wait', 2):.2f}" if use_redis else ""))
