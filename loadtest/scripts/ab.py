#!/usr/bin/env python3
"""Before/after of one change: two broker binaries measured alternately in the same run.

Each round starts a fresh broker of each binary (pinned to CPU 0; the generator on CPU 1) and,
with --queue redis, empties a private Redis (AOF on, `appendfsync` as given, not pinned) first.
Per cell it reports requests/s and the CPU time the broker and Redis spent per request
(`/proc/PID/stat` and `INFO cpu` deltas): CPU time per request moves less with this VM's noise
than throughput does. Medians over the rounds, and B's ratio to A.

    cp target/release/openhqm /tmp/openhqm-before     # then change, rebuild
    python3 loadtest/scripts/ab.py /tmp/openhqm-before target/release/openhqm \
        [--queue redis] [--fsync always|everysec] [--scenario submit|e2e|wait] [--rounds 5] [--secs 5]
        [--server valkey-server] [--a-args '--queue.durability relaxed'] [--b-args '...']
        [--connections 64]

The same binary twice with different flags (--a-args / --b-args) measures a setting.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import LOADTEST, Redis, free_port, process_cpu, redis_info, wait_port  # noqa: E402


def redis_cpu(port):
    vals = redis_info(port, "cpu")
    return float(vals["used_cpu_user"]) + float(vals["used_cpu_sys"])


def one(binary, extra, args, redis):
    port = free_port()
    cmd = [binary, "--host", "127.0.0.1", "--port", str(port), "--shards", "1", "--cpus", "0",
           "--log-level", "warn"]
    if redis:
        redis.flush()
        cmd += ["--queue", "redis", "--queue.redis_url", f"redis://127.0.0.1:{redis.port}"]
    cmd += extra
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        subprocess.run(["sleep", "0.3"], check=True)
        b0 = process_cpu(proc.pid)
        r0 = redis_cpu(redis.port) if redis else 0.0
        out = subprocess.run(
            [LOADTEST, "run", "--url", f"http://127.0.0.1:{port}", "--scenario", args.scenario,
             "--cpus", "1", "--duration", f"{args.secs}s", "--connections", str(args.connections),
             "--json", "--no-progress"],
            capture_output=True, text=True, timeout=args.secs + 120)
        b1 = process_cpu(proc.pid)
        r1 = redis_cpu(redis.port) if redis else 0.0
        r = json.loads(out.stdout)
    finally:
        proc.terminate()
        proc.wait(10)
    done = r["completed_per_s"] if args.scenario in ("e2e", "wait") else r["throughput_rps"]
    n = max(1.0, done * args.secs)
    problems = sum(r.get(k, 0) for k in ("non_2xx", "transport_errors", "timed_out", "lost_ids",
                                         "duplicate_ids", "bad_responses"))
    return {"rate": done, "broker_us": (sum(b1) - sum(b0)) / n * 1e6,
            "user_us": (b1[0] - b0[0]) / n * 1e6, "sys_us": (b1[1] - b0[1]) / n * 1e6,
            "redis_us": (r1 - r0) / n * 1e6, "problems": problems}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--queue", choices=("memory", "redis"), default="memory")
    p.add_argument("--fsync", choices=("always", "everysec"), default="always")
    p.add_argument("--scenario", choices=("submit", "e2e", "wait"), default="submit")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--secs", type=int, default=5)
    p.add_argument("--server", default="redis-server", help="redis-server or valkey-server")
    p.add_argument("--a-args", default="", help="extra broker flags for A")
    p.add_argument("--b-args", default="", help="extra broker flags for B")
    p.add_argument("--connections", type=int, default=64, help="the generator's connections")
    args = p.parse_args()
    redis = Redis(fsync=args.fsync, server=args.server) if args.queue == "redis" else None
    extra = {"A": args.a_args.split(), "B": args.b_args.split()}
    rows = {"A": [], "B": []}
    try:
        for i in range(args.rounds):
            for name, binary in (("A", args.a), ("B", args.b)):
                r = one(binary, extra[name], args, redis)
                rows[name].append(r)
                print(f"round {i + 1} {name}: {r['rate']:,.0f}/s broker {r['broker_us']:.2f} µs "
                      f"redis {r['redis_us']:.2f} µs problems {r['problems']}", file=sys.stderr)
    finally:
        if redis:
            redis.stop()
    unit = "completed/s" if args.scenario in ("e2e", "wait") else "req/s"
    print(f"{args.scenario}, {args.connections} connections, queue {args.queue}"
          + (f" ({args.server}, appendfsync {args.fsync})" if redis else "")
          + f", {args.rounds} rounds x {args.secs} s, medians")
    print(f"| build | {unit} | broker CPU µs/req (user + sys) | Redis CPU µs/req | problems |")
    print("|---|---|---|---|---|")
    med = {}
    for name, binary in (("A", args.a), ("B", args.b)):
        keys = ("rate", "broker_us", "user_us", "sys_us", "redis_us")
        m = {k: statistics.median(r[k] for r in rows[name]) for k in keys}
        med[name] = m
        flags = f" {' '.join(extra[name])}" if extra[name] else ""
        print(f"| {name} `{binary}{flags}` | {m['rate']:,.0f} | {m['broker_us']:.2f} ({m['user_us']:.2f} + "
              f"{m['sys_us']:.2f}) | {m['redis_us']:.2f} | "
              f"{sum(r['problems'] for r in rows[name])} |")
    print(f"B/A: rate {med['B']['rate'] / med['A']['rate']:.2f}, broker CPU/req "
          f"{med['B']['broker_us'] / max(med['A']['broker_us'], 1e-9):.2f}"
          + f", user CPU/req {med['B']['user_us'] / max(med['A']['user_us'], 1e-9):.2f}"
          + (f", Redis CPU/req {med['B']['redis_us'] / max(med['A']['redis_us'], 1e-9):.2f}" if redis else ""))


if __name__ == "__main__":
    main()
