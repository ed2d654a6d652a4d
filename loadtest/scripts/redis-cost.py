#!/usr/bin/env python3
"""What Redis mode costs Redis, per completed request (issue 14's table), same run.

For each `appendfsync` setting (always, everysec) a redis-server is started here (a free port, a
temp dir, AOF on, no automatic AOF rewrite) and emptied before each cell; a broker (1 shard on
CPU 0; the generator on CPU 1) runs `loadtest run --scenario e2e` at 64 and at 512 connections,
and so does a broker on the embedded queue. Per cell: completed/s, e2e p50, Redis commands per
completed request on the write path (every `INFO commandstats` call, MULTI/EXEC and commands run
inside scripts included, the status GETs of the polling client counted apart), Redis CPU per
completed request (`INFO cpu` delta, the kernel's part apart), the bytes appended to the AOF
(`INFO persistence` aof_current_size delta), and Redis's socket reads and reply writes per
completed request (`INFO stats` total_reads_processed, total_writes_processed: the round trips
it served); the client's HTTP requests (submit and polls) and the broker's own CPU
(`/proc/PID/stat`) per completed request. Prints a Markdown table and each command's share.

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/redis-cost.py [SECONDS=8] [--broker BIN] [--connections 64,512]
        [--fsync always,everysec] [--no-embedded] [--scenario e2e|wait]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# Redis's socket reads (each a turn of its event loop for one client) and reply writes.
IO = ("total_reads_processed", "total_writes_processed")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import (BROKER, LOADTEST, free_port, process_cpu, redis_info, stop,  # noqa: E402
                    wait_port)


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          check=True).stdout


def commandstats(port):
    """{command: calls}, scripts' inner commands included (Redis counts them)."""
    out = cli(port, "INFO", "commandstats")
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"cmdstat_([a-z|_]+):calls=(\d+)", out)}


def stats(port, *names):
    """Counters from `INFO stats`."""
    vals = redis_info(port, "stats")
    return [int(vals[n]) for n in names]


def cpu(port):
    """(user, system) CPU seconds of redis-server's process."""
    vals = redis_info(port, "cpu")
    return float(vals["used_cpu_user"]), float(vals["used_cpu_sys"])


def aof_bytes(port):
    """Bytes written to the append-only file so far."""
    return int(redis_info(port, "persistence").get("aof_current_size", 0))


class RedisServer:
    def __init__(self, fsync):
        self.dir = tempfile.mkdtemp(prefix="openhqm-redis-cost-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", fsync, "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        # No AOF rewrite during a cell: its child takes a core of this 2-vCPU guest that `INFO
        # cpu` does not count, and it shrinks the file whose growth is measured.
        cli(self.port, "CONFIG", "SET", "auto-aof-rewrite-percentage", "0")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def cell(broker, redis, connections, secs, scenario="e2e"):
    port = free_port()
    cmd = [broker, "--host", "127.0.0.1", "--port", str(port), "--shards", "1", "--cpus", "0",
           "--log-level", "warn"]
    if redis:
        cli(redis.port, "FLUSHALL")
        cli(redis.port, "CONFIG", "RESETSTAT")
        cmd += ["--queue", "redis", "--queue.redis_url", f"redis://127.0.0.1:{redis.port}",
                "--queue.durability", "relaxed"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(0.5)  # Redis connections up, start-up checks done
        broker0 = sum(process_cpu(proc.pid))
        before = commandstats(redis.port) if redis else {}
        cpu0 = cpu(redis.port) if redis else (0.0, 0.0)
        aof0 = aof_bytes(redis.port) if redis else 0
        io0 = stats(redis.port, *IO) if redis else [0, 0]
        out = subprocess.run(
            [LOADTEST, "run", "--url", f"http://127.0.0.1:{port}", "--scenario", scenario,
             "--connections", str(connections), "--cpus", "1", "--duration", f"{secs}s",
             "--json", "--no-progress"],
            capture_output=True, text=True, timeout=secs + 120)
        broker1 = sum(process_cpu(proc.pid))
        after = commandstats(redis.port) if redis else {}
        cpu1 = cpu(redis.port) if redis else (0.0, 0.0)
        aof1 = aof_bytes(redis.port) if redis else 0
        io1 = stats(redis.port, *IO) if redis else [0, 0]
        r = json.loads(out.stdout)
    finally:
        stop(proc)
    done = max(1.0, r["completed_per_s"] * secs)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta = {k: v for k, v in delta.items() if v > 0 and k not in ("info", "config|resetstat")}
    gets = delta.pop("get", 0)
    p50 = r["latency_us"].get("e2e", {}).get("p50")
    problems = sum(r.get(k, 0) for k in ("non_2xx", "transport_errors", "timed_out", "lost_ids",
                                         "duplicate_ids", "bad_responses"))
    return {
        "rate": r["completed_per_s"],
        "broker_us": (broker1 - broker0) / done * 1e6,
        "http": r["requests"] / done,
        "p50_ms": (p50 or 0) / 1000.0,
        "cmds": sum(delta.values()) / done if redis else None,
        "gets": gets / done if redis else None,
        "cpu_us": (sum(cpu1) - sum(cpu0)) / done * 1e6 if redis else None,
        "sys_us": (cpu1[1] - cpu0[1]) / done * 1e6 if redis else None,
        "aof_bytes": (aof1 - aof0) / done if redis else None,
        "reads": (io1[0] - io0[0]) / done,
        "writes": (io1[1] - io0[1]) / done,
        "by_cmd": {k: v / done for k, v in sorted(delta.items(), key=lambda kv: -kv[1])},
        "problems": problems,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("secs", nargs="?", type=int, default=8)
    p.add_argument("--broker", default=BROKER)
    p.add_argument("--connections", default="64,512")
    p.add_argument("--fsync", default="always,everysec")
    p.add_argument("--no-embedded", action="store_true")
    p.add_argument("--scenario", default="e2e", help="e2e (submit, then polls) or wait")
    args = p.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    rows = []
    for c in [] if args.no_embedded else conns:
        rows.append(("embedded", c, cell(args.broker, None, c, args.secs, args.scenario)))
    for fsync in args.fsync.split(","):
        redis = RedisServer(fsync)
        try:
            for c in conns:
                rows.append((f"redis {fsync}", c, cell(args.broker, redis, c, args.secs, args.scenario)))
        finally:
            redis.stop()
    print(f"{args.scenario}, 1 shard, {args.secs} s per cell, `{args.broker}`")
    print("| run | conns | completed/s | e2e p50 | HTTP requests / completed "
          "| broker CPU / completed "
          "| Redis cmds / completed (write path) "
          "| status GETs / completed | Redis CPU / completed (of it kernel) | Redis socket reads / "
          "writes per completed | AOF bytes / completed | problems |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, c, r in rows:
        redis_cols = ("– | – | – | – | –" if r["cmds"] is None else
                      f"{r['cmds']:.2f} | {r['gets']:.2f} | {r['cpu_us']:.1f} µs "
                      f"({r['sys_us']:.1f}) | {r['reads']:.2f} / {r['writes']:.2f} "
                      f"| {r['aof_bytes']:,.0f}")
        print(f"| {name} | {c} | {r['rate']:,.0f} | {r['p50_ms']:.2f} ms | {r['http']:.2f} "
              f"| {r['broker_us']:.1f} µs | {redis_cols} "
              f"| {r['problems']} |")
    print()
    for name, c, r in rows:
        if r["by_cmd"]:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in r["by_cmd"].items() if v >= 0.005)
            print(f"- {name}, {c} connections: {parts}")


if __name__ == "__main__":
    main()
