#!/usr/bin/env python3
"""Redis CPU per request at the floor issue 14 names, against the broker's, same Redis, same run.

The floor is the two writes no design can drop: the `XADD` that queues a request and the `SET`
that records its final state (with its expiry). `redis-benchmark` sends them pipelined (16
clients, 16 commands deep by default, on CPU 1), shaped as the broker's (the same stream entry fields,
a 63-byte state key, a 137-byte final state, `PXAT`), on a private redis-server (AOF on,
`appendfsync` as given, not pinned). Then each broker binary given runs the e2e scenario (1
shard on CPU 0, the generator on CPU 1, 64 connections or as given) against the same emptied
Redis. Per cell: Redis CPU per request (`INFO cpu` delta, user + system), AOF bytes and Redis
socket reads per request (the requests counted from Redis's own counters). Rounds alternate;
medians are printed. `--pipeline N` sets redis-benchmark's depth (16 by default).

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/redis-floor.py [--rounds 3] [--secs 5] [--fsync everysec]
        [--requests 200000] [--connections 64,512] [--pipeline 16] [BROKER...]
        # BROKER defaults to target/release/openhqm
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import BROKER, LOADTEST, Redis, free_port, redis_info, stop, wait_port  # noqa: E402

STREAM = "openhqm-requests:{0}"
GROUP = "openhqm-workers"
ID = "865e97f9-9a32-4d94-90e6-__rand_int__"
# One final state as the broker writes it (docs/redis.md), 137 bytes.
FINAL = ('COMPLETED 1796293393716710 1796293393723837 0 1796293393723837 200 r66:'
         '{"output":"xxxxxxxx","processed_at":"2026-12-03T10:23:13.723838Z"}')
# (name, what it is, command, requests it serves per call). Run in this order: the XADDs fill
# the stream the XREADGROUPs then deliver from, 16 entries a call; an MSET writes 8 states, as
# the broker writes the PENDING states of a submit batch.
CELLS = [
    ("XADD", "floor: the queue entry", ["XADD", STREAM, "*", "id", ID, "payload",
     '{"operation":"echo","data":"xxxxxxxx"}', "attempt", "1", "meta",
     "0 300000 0 1796293393716710"], 1),
    ("SET", "floor: the final state", ["SET", f"{STREAM}:state:{ID}", FINAL, "PXAT",
     "4102444800000"], 1),
    ("MSET", "guarantee: the PENDING state other instances read", ["MSET"] + [
     f"{STREAM}:state:{ID}", "PENDING 1796293393716710 1796293393716710"] * 8, 8),
    ("XREADGROUP", "guarantee: the delivery record (pending list, XCLAIM in the AOF)",
     ["XREADGROUP", "GROUP", GROUP, "c", "COUNT", "16", "STREAMS", STREAM, ">"], 16),
]
FLOOR = ("XADD", "SET")


def sample(port):
    """Redis CPU seconds (user + system), bytes appended to the AOF, socket reads so far."""
    cpu = redis_info(port, "cpu")
    return (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            int(redis_info(port, "persistence").get("aof_current_size", 0)),
            int(redis_info(port, "stats")["total_reads_processed"]))


def calls(port, command):
    """`INFO commandstats` calls of `command` so far."""
    stats = redis_info(port, "commandstats").get(f"cmdstat_{command.lower()}", "calls=0")
    return int(stats.split(",")[0].split("=")[1])


def pending(port):
    """Entries in the group's pending list."""
    out = subprocess.run(["redis-cli", "-p", str(port), "XPENDING", STREAM, GROUP],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def cli(port, *args):
    subprocess.run(["redis-cli", "-p", str(port), *args], stdout=subprocess.DEVNULL, check=True)


def command_cell(redis, name, command, per_call, n, depth):
    """Redis CPU, AOF bytes and socket reads per request served. The requests served are
    counted from Redis (calls x requests per call; for XREADGROUP the entries it delivered):
    redis-benchmark sends whole pipelines, so it may send a few more calls than asked."""
    port = redis.port
    c0, a0, r0 = sample(port)
    k0 = pending(port) if name == "XREADGROUP" else calls(port, name) * per_call
    subprocess.run(["taskset", "-c", "1", "redis-benchmark", "-p", str(port), "-c", "16",
                    "-P", str(depth), "-n", str(n // per_call), "-r", "100000000", "-q",
                    *command], stdout=subprocess.DEVNULL, check=True)
    c1, a1, r1 = sample(port)
    k1 = pending(port) if name == "XREADGROUP" else calls(port, name) * per_call
    served = max(1, k1 - k0)
    return (c1 - c0) * 1e6 / served, (a1 - a0) / served, (r1 - r0) / served


def broker_cell(redis, broker, secs, connections):
    redis.flush()
    port = free_port()
    proc = subprocess.Popen(
        [broker, "--host", "127.0.0.1", "--port", str(port), "--shards", "1", "--cpus", "0",
         "--log-level", "warn", "--queue", "redis", "--queue.redis_url",
         f"redis://127.0.0.1:{redis.port}", "--queue.durability", "relaxed"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(0.5)
        c0, a0, r0 = sample(redis.port)
        out = subprocess.run(
            [LOADTEST, "run", "--url", f"http://127.0.0.1:{port}", "--scenario", "e2e",
             "--connections", str(connections), "--cpus", "1", "--duration", f"{secs}s",
             "--json", "--no-progress"], capture_output=True, text=True, timeout=secs + 120,
            check=True)
        c1, a1, r1 = sample(redis.port)
    finally:
        stop(proc)
    r = json.loads(out.stdout)
    done = max(1, r["completed"])
    return (c1 - c0) * 1e6 / done, (a1 - a0) / done, (r1 - r0) / done, r["completed_per_s"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("brokers", nargs="*", default=[BROKER])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=int, default=5)
    p.add_argument("--fsync", default="everysec")
    p.add_argument("--requests", type=int, default=200000)
    p.add_argument("--connections", default="64", help="the brokers' cells, e.g. 64,512")
    p.add_argument("--pipeline", type=int, default=16, help="commands per client per round trip")
    args = p.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    cells = {}
    for rnd in range(args.rounds):
        redis = Redis(args.fsync)
        try:
            # Per-request figures: no AOF rewrite may shrink the file during a cell.
            cli(redis.port, "CONFIG", "SET", "auto-aof-rewrite-percentage", "0")
            cli(redis.port, "XGROUP", "CREATE", STREAM, GROUP, "0", "MKSTREAM")
            for name, _, cmd, per_call in CELLS:
                us, aof, reads = command_cell(redis, name, cmd, per_call, args.requests,
                                              args.pipeline)
                cells.setdefault(name, []).append((us, aof, reads))
                print(f"round {rnd + 1} {name}: {us:.2f} µs of Redis CPU, {aof:.0f} AOF bytes, "
                      f"{reads:.4f} socket reads per request", flush=True)
            for b in args.brokers:
                for c in conns:
                    us, aof, reads, rate = broker_cell(redis, b, args.secs, c)
                    cells.setdefault((b, c), []).append((us, aof, reads))
                    print(f"round {rnd + 1} {b}, {c} connections: {rate:,.0f} completed/s, "
                          f"{us:.2f} µs of Redis CPU, {aof:.0f} AOF bytes, {reads:.3f} socket "
                          "reads per completed request", flush=True)
        finally:
            redis.stop()
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3))
           for k, v in cells.items()}
    floor = [sum(med[n][i] for n in FLOOR) for i in range(2)]
    both = [sum(med[c[0]][i] for c in CELLS) for i in range(2)]
    print(f"\nappendfsync {args.fsync}, {args.rounds} rounds, medians; redis-benchmark: 16 "
          f"clients, {args.pipeline} commands deep")
    print("| cell | Redis CPU µs per request | AOF bytes per request | Redis socket reads per "
          "request | ÷ floor |")
    print("|---|---|---|---|---|")
    for name, what, _, per_call in CELLS:
        each = f", {per_call} a call" if per_call > 1 else ""
        us, aof, reads = med[name]
        print(f"| `{name}` alone ({what}){each} | {us:.2f} | {aof:.0f} | {reads:.4f} | |")
    print(f"| floor: `XADD` + `SET` | {floor[0]:.2f} | {floor[1]:.0f} | | 1.00 |")
    print(f"| floor + the guarantees' `MSET` and `XREADGROUP` | {both[0]:.2f} | {both[1]:.0f} | "
          f"| {both[0] / floor[0]:.2f} |")
    for b in args.brokers:
        for c in conns:
            us, aof, reads = med[(b, c)]
            print(f"| broker `{b}`, e2e, {c} connections | {us:.2f} | {aof:.0f} | {reads:.3f} "
                  f"| {us / floor[0]:.2f} |")

if __name__ == "__main__":
    main()
