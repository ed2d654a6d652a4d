#!/usr/bin/env python3
"""PERFORMANCE.md's one-page summary: the headline table and its plots, measured in one run.

Cells (closed loop, 64 connections, unless named otherwise): the do-nothing ceiling
(`loadtest null-server`), the broker's submits and end-to-end completions with the embedded
queue and with Redis (a private redis-server on a free port, AOF with `appendfsync always`, not
pinned), and submits in open loop at a fixed rate. Servers are pinned to CPU 0, the generator to
CPU 1; a fresh broker (and an emptied Redis) for every measurement; the cells alternate round by
round so this shared machine's noise falls on all of them alike. Medians over the rounds.

The machine is shared: per measurement the script also reports the CPU that processes other than
its own (broker, generator, Redis) used meanwhile, as a share of both CPUs ("others"). A round
with a large share measured the neighbours too; run again when the machine is quiet.

The figures (`--plot`, `--hgrm`) are those of each plotted cell's median round, written to OUT
as NAME.svg and NAME.KIND.hgrm.

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/perf-summary.py [--rounds 3] [--secs 5] [--out docs/perf] [--only NAME ...]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tables  # noqa: E402
from tables import Redis, broker, measure, null_server  # noqa: E402
from ab import redis_cpu  # noqa: E402

# name, server, scenario, extra loadtest arguments, the cell's rate key, plotted
CELLS = [
    ("ceiling", "null", "get", [], "throughput_rps", False),
    ("submit-embedded", "memory", "submit", [], "throughput_rps", False),
    ("e2e-embedded", "memory", "e2e", [], "completed_per_s", True),
    ("submit-redis", "redis", "submit", [], "throughput_rps", False),
    ("e2e-redis", "redis", "e2e", [], "completed_per_s", True),
    # Open loop at a rate the embedded broker holds (about 40 % of its closed-loop maximum on this
    # machine), paced every 100 us: latency from each request's intended send time.
    ("submit-open-embedded", "memory", "submit", ["--rate", "50000", "--pacer"], "throughput_rps", True),
]


def cpu_busy():
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(v) - v[3] - v[4]) / tick, sum(v) / tick


def own_cpu(redis):
    """CPU seconds of this script's children (brokers and generators, once waited for) and Redis."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + (redis_cpu(redis.port) if redis else 0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=int, default=5)
    p.add_argument("--out", default=os.path.join(tables.ROOT, "docs", "perf"))
    p.add_argument("--only", nargs="*", help="cell names (default: all)")
    args = p.parse_args()
    tables.SECS = str(args.secs)
    cells = [c for c in CELLS if not args.only or c[0] in args.only]
    if not cells:
        sys.exit(f"no such cell; cells: {', '.join(c[0] for c in CELLS)}")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="openhqm-perf-summary-")
    redis = Redis() if any(c[1] == "redis" for c in cells) else None
    makes = {"null": null_server, "memory": broker([])}
    if redis:
        makes["redis"] = broker(["--queue", "redis", "--queue.redis_url", f"redis://127.0.0.1:{redis.port}"])
    load = lambda: open("/proc/loadavg").read().split()[0]  # noqa: E731
    print(f"nproc {os.cpu_count()}, load average at start {load()}", file=sys.stderr)
    rows = {c[0]: [] for c in cells}
    try:
        for i in range(args.rounds):
            for name, server, scenario, extra, key, plotted in cells:
                files = []
                if plotted:
                    base = os.path.join(tmp, f"{name}-r{i}")
                    files = ["--plot", base + ".svg", "--hgrm", base + ".hgrm"]
                (busy0, total0), own0 = cpu_busy(), own_cpu(redis)
                r = measure(makes[server], scenario, *extra, *files,
                            redis=redis if server == "redis" else None)
                (busy1, total1), own1 = cpu_busy(), own_cpu(redis)
                r["others"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(total1 - total0, 1e-9)
                r["round"] = i
                rows[name].append(r)
                print(f"round {i + 1} {name}: {r[key]:,.0f}/s, problems {r['problems']}, "
                      f"others' CPU {r['others']:.0%}", file=sys.stderr)
        print(f"load average at end {load()}", file=sys.stderr)
        print(f"{args.rounds} rounds x {args.secs} s, medians (every round's figure in brackets)\n")
        print("| cell | rate | rounds | latency p50 / p99 / p99.9 µs | others' CPU (rounds) | problems |")
        print("|---|---|---|---|---|---|")
        for name, server, scenario, extra, key, plotted in cells:
            rs = sorted(rows[name], key=lambda r: r[key])
            median = rs[len(rs) // 2]
            kind = "e2e" if scenario == "e2e" else scenario
            lat = lambda r, q: r["latency_us"].get(kind, {}).get(q, 0)  # noqa: E731
            unit = "completed/s" if key == "completed_per_s" else "req/s"
            others = " · ".join(f"{r['others']:.0%}" for r in rows[name])
            print(f"| {name} | {statistics.median(r[key] for r in rs):,.0f} {unit} | "
                  f"{' · '.join(f'{r[key]:,.0f}' for r in rows[name])} | "
                  f"{statistics.median(lat(r, 'p50') for r in rs):,.0f} / "
                  f"{statistics.median(lat(r, 'p99') for r in rs):,.0f} / "
                  f"{statistics.median(lat(r, 'p99_9') for r in rs):,.0f} | "
                  f"{others} | "
                  f"{sum(r['problems'] for r in rs)} |")
            if plotted:
                base = os.path.join(tmp, f"{name}-r{median['round']}")
                shutil.copy(base + ".svg", os.path.join(args.out, name + ".svg"))
                for f in os.listdir(tmp):
                    if f.startswith(f"{name}-r{median['round']}.") and f.endswith(".hgrm"):
                        kind_file = f.split(".", 1)[1]
                        shutil.copy(os.path.join(tmp, f), os.path.join(args.out, f"{name}.{kind_file}"))
        if "submit-embedded" in rows and "ceiling" in rows:
            ratio = (statistics.median(r["throughput_rps"] for r in rows["submit-embedded"])
                     / statistics.median(r["throughput_rps"] for r in rows["ceiling"]))
            print(f"\nsubmit, embedded / ceiling: {ratio:.2f}")
    finally:
        if redis:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
