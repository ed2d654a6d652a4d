#!/usr/bin/env python3
"""The PERFORMANCE.md tables, measured in one run on this machine.

Servers (null responder, broker) are pinned to CPU 0, the load generator to CPU 1; Redis (a
private instance on a free port, AOF with `appendfsync always`; table 1 also shows a second one
with `everysec`) is not pinned. A fresh broker (and
an emptied Redis) for every measurement. Each measurement is repeated ROUNDS times, alternating
the variants, and the median is reported.

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/tables.py [ROUNDS=3] [SECONDS=5] [SECTIONS=1234]

SECTIONS picks tables (e.g. `2`); the open-loop table needs the maxima of table 1, so without 1
they are measured first and not printed.
"""
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BROKER = os.path.join(ROOT, "target/release/openhqm")
LOADTEST = os.path.join(ROOT, "target/release/loadtest")
ROUNDS = 3
SECS = "5"


def process_cpu(pid):
    """(user, system) CPU seconds a process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def redis_info(port, section):
    """One `INFO` section of the Redis on `port`, as {field: text}."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", section], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


class Redis:
    def __init__(self, fsync="always", server="redis-server"):
        self.dir = tempfile.mkdtemp(prefix="openhqm-bench-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", fsync, "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def flush(self):
        subprocess.run(["redis-cli", "-p", str(self.port), "FLUSHALL"], stdout=subprocess.DEVNULL, check=True)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    def __init__(self, args):
        self.port = free_port()
        self.proc = subprocess.Popen(args(self.port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        time.sleep(0.3)  # Redis connections up

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        stop(self.proc)


def stop(proc):
    """Asks `proc` to stop (SIGTERM), and kills it if it has not within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def broker(extra, shards="1", cpus="0"):
    def args(port):
        a = [BROKER, "--host", "127.0.0.1", "--port", str(port), "--shards", shards, "--log-level", "warn"]
        if cpus:
            a += ["--cpus", cpus]
        return a + extra
    return args


def null_server(port):
    return [LOADTEST, "null-server", "--port", str(port), "--cpu", "0"]


def load(port, scenario, *extra, cpus="1"):
    out = subprocess.run(
        [LOADTEST, "run", "--url", f"http://127.0.0.1:{port}", "--scenario", scenario, "--cpus", cpus,
         "--duration", f"{SECS}s", "--json", "--no-progress", *extra],
        capture_output=True, text=True, timeout=int(SECS) + 120)
    r = json.loads(out.stdout)
    kinds = ("non_2xx", "transport_errors", "timed_out", "lost_ids", "duplicate_ids", "bad_responses")
    bad = sum(r.get(k, 0) for k in kinds)
    r["problems"] = bad
    if bad:
        detail = ", ".join(f"{k} {r.get(k, 0)}" for k in kinds if r.get(k, 0))
        print(f"problems in {scenario} {' '.join(extra)}: {detail}; first error: {r.get('first_error')}", file=sys.stderr)
    return r


def measure(make, scenario, *extra, redis=None, cpus="1"):
    if redis:
        redis.flush()
    s = Server(make)
    try:
        return load(s.port, scenario, *extra, cpus=cpus)
    finally:
        s.stop()


def med(rows, f):
    return statistics.median(f(r) for r in rows)


def lat(r, key):
    return r["latency_us"].get(key) or next(iter(r["latency_us"].values()))


def main():
    global ROUNDS, SECS
    ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS
    SECS = sys.argv[2] if len(sys.argv) > 2 else SECS
    sections = sys.argv[3] if len(sys.argv) > 3 else "1234"
    redis = Redis()
    # Table 1 also shows the cost of durability: the same broker on a Redis that fsyncs once a
    # second (Redis's default; a power loss can lose up to a second of accepted requests).
    lax = Redis("everysec")
    memory = broker([])
    on_redis = broker(["--queue", "redis", "--queue.redis_url", f"redis://127.0.0.1:{redis.port}"])
    on_lax = broker(["--queue", "redis", "--queue.redis_url", f"redis://127.0.0.1:{lax.port}"])
    problems = 0
    try:
        # 1. submit throughput, closed loop, 64 connections.
        t1 = {"ceiling (null responder)": [], "broker, embedded": [], "broker, redis": [],
              "broker, redis (appendfsync everysec)": []}
        for _ in range(ROUNDS):
            t1["ceiling (null responder)"].append(measure(null_server, "get"))
            t1["broker, embedded"].append(measure(memory, "submit"))
            t1["broker, redis"].append(measure(on_redis, "submit", redis=redis))
            if "1" in sections:
                t1["broker, redis (appendfsync everysec)"].append(
                    measure(on_lax, "submit", redis=lax))
        if not t1["broker, redis (appendfsync everysec)"]:
            del t1["broker, redis (appendfsync everysec)"]
        out = print if "1" in sections else (lambda *a, **k: None)
        out(f"### 1. Submit throughput, closed loop, 64 connections, {SECS} s x {ROUNDS} (medians)\n")
        out("| server | req/s | p50 µs | p99 µs | p99.9 µs | ratio |")
        out("|---|---|---|---|---|---|")
        ceiling = med(t1["ceiling (null responder)"], lambda r: r["throughput_rps"])
        embedded = med(t1["broker, embedded"], lambda r: r["throughput_rps"])
        maxima = {}
        for name, rows in t1.items():
            rps = med(rows, lambda r: r["throughput_rps"])
            maxima[name] = rps
            key = "get" if "null" in name else "submit"
            ratio = f"{rps / ceiling:.2f} of ceiling" if "embedded" in name else (
                f"{rps / embedded:.2f} of embedded" if "redis" in name else "1.00")
            out(f"| {name} | {rps:,.0f} | {med(rows, lambda r: lat(r, key)['p50']):,.0f} | "
                f"{med(rows, lambda r: lat(r, key)['p99']):,.0f} | {med(rows, lambda r: lat(r, key)['p99_9']):,.0f} | {ratio} |")
            problems += sum(r["problems"] for r in rows)
        out()
        if "2" not in sections:
            variants = ()
        else:

            # 2. open loop at 25/50/90 % of the measured maximum.
            print(f"### 2. Submit latency, open loop (from intended send time), {SECS} s x {ROUNDS} (medians)\n")
            print("Service = sent → answer (the server's share); lag = sent − intended (the generator's).")
            print("Pacing: `--pacer` (100 µs ticks from a helper thread) at 25 and 50 %; the runtime's 1 ms timer at")
            print("90 %, where the pacer's wake-ups would make the generator itself fall behind.\n")
            print("| server | load (of that broker's max) | pacing | rate req/s | achieved | p50 µs | p99 µs | p99.9 µs | service p99 µs | lag p99 µs |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            # The ceiling at the embedded broker's rates is the baseline: the generator's own timer
            # lag and this machine's noise, measured alternately with the broker.
            variants = (("ceiling (null responder)", null_server, None, "get", "broker, embedded"),
                        ("embedded", memory, None, "submit", "broker, embedded"),
                        ("redis", on_redis, redis, "submit", "broker, redis"))
        for name, make, r_, scenario, of in variants:
            top = maxima[of]
            for share in (0.25, 0.5, 0.9):
                rate = int(top * share)
                pacing = ["--pacer"] if share < 0.9 else []
                rows = [measure(make, scenario, "--rate", str(rate), *pacing, redis=r_) for _ in range(ROUNDS)]
                problems += sum(r["problems"] for r in rows)
                service = lambda r: (r.get("service_time_us", {}).get(scenario) or {}).get("p99", 0)
                lag = lambda r: (r.get("send_lag_us") or {}).get("p99", 0)
                print(f"| {name} | {int(share * 100)} % | {'pacer' if pacing else '1 ms timer'} | {rate:,} | {med(rows, lambda r: r['throughput_rps']):,.0f} | "
                      f"{med(rows, lambda r: lat(r, scenario)['p50']):,.0f} | {med(rows, lambda r: lat(r, scenario)['p99']):,.0f} | "
                      f"{med(rows, lambda r: lat(r, scenario)['p99_9']):,.0f} | {med(rows, service):,.0f} | {med(rows, lag):,.0f} |")
        if variants:
            print()
            # What one round trip costs when both sides must be woken: one connection, one
            # request at a time, the generator on the other CPU (as above) or on the server's.
            print(f"### 2b. One request at a time on one connection (round trip), {SECS} s x {ROUNDS} (medians)\n")
            print("| server | generator on | req/s | p50 µs | p99 µs |")
            print("|---|---|---|---|---|")
            for name, make, scenario in (("ceiling (null responder)", null_server, "get"),
                                         ("broker, embedded", memory, "submit")):
                for cpus, where in (("1", "the other CPU (1)"), ("0", "the server's CPU (0)")):
                    rows = [measure(make, scenario, "--connections", "1", cpus=cpus) for _ in range(ROUNDS)]
                    problems += sum(r["problems"] for r in rows)
                    print(f"| {name} | {where} | {med(rows, lambda r: r['throughput_rps']):,.0f} | "
                          f"{med(rows, lambda r: lat(r, scenario)['p50']):,.0f} | {med(rows, lambda r: lat(r, scenario)['p99']):,.0f} |")
            print()

        # 3. end to end.
        if "3" not in sections:
            return report(problems)
        print(f"### 3. End to end (submit, then poll until final), closed loop, {SECS} s x {ROUNDS} (medians)\n")
        print("| backend | completed/s | submit→complete p50 µs | p99 µs | p99.9 µs | lost |")
        print("|---|---|---|---|---|---|")
        for name, make, r_ in (("embedded", memory, None), ("redis", on_redis, redis)):
            rows = [measure(make, "e2e", redis=r_) for _ in range(ROUNDS)]
            problems += sum(r["problems"] for r in rows)
            k = "e2e" if "e2e" in rows[0]["latency_us"] else next(iter(rows[0]["latency_us"]))
            print(f"| {name} | {med(rows, lambda r: r['completed_per_s']):,.0f} | {med(rows, lambda r: lat(r, k)['p50']):,.0f} | "
                  f"{med(rows, lambda r: lat(r, k)['p99']):,.0f} | {med(rows, lambda r: lat(r, k)['p99_9']):,.0f} | "
                  f"{sum(r['lost_ids'] for r in rows)} |")
        print()

        # 4. status lookups: one shard (all local) vs two shards (about half cross the mesh).
        if "4" not in sections:
            return report(problems)
        print(f"### 4. Status lookups, embedded, {SECS} s x {ROUNDS} (medians)\n")
        print("| shards | lookups/s | p50 µs | p99 µs |")
        print("|---|---|---|---|")
        variants = (
            ("1", "0", "1, pinned to CPU 0 (every id local)"),
            ("2", None, "2, unpinned (about half the lookups cross the mesh)"),
        )
        for shards, cpus, note in variants:
            rows = [measure(broker([], shards=shards, cpus=cpus), "status") for _ in range(ROUNDS)]
            problems += sum(r["problems"] for r in rows)
            k = "status" if "status" in rows[0]["latency_us"] else next(iter(rows[0]["latency_us"]))
            print(f"| {note} | {med(rows, lambda r: r['throughput_rps']):,.0f} | {med(rows, lambda r: lat(r, k)['p50']):,.0f} | "
                  f"{med(rows, lambda r: lat(r, k)['p99']):,.0f} |")
        report(problems)
    finally:
        redis.stop()
        lax.stop()


def report(problems):
    print()
    print(f"problems (non-2xx, transport errors, timeouts, lost or duplicate ids, bad bodies) over all runs: {problems} (each cell's on stderr)")


if __name__ == "__main__":
    main()
