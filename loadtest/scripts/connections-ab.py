#!/usr/bin/env python3
"""One broker binary end to end at two connection counts, alternating round by round in the same
run (issue 14's "no collapse": completed/s at 512 connections against 64). Each cell is a fresh
broker (1 shard, CPU 0; the generator on CPU 1) and, with --queue redis, an emptied private Redis
(AOF on, `appendfsync` as given). Medians over the rounds, and their ratio.

    python3 loadtest/scripts/connections-ab.py target/release/openhqm --queue redis \
        [--fsync everysec|always] [--connections 64,512] [--rounds 3] [--secs 5]
"""
import argparse
import os
import statistics
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab  # noqa: E402
from tables import Redis  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--queue", choices=("memory", "redis"), default="redis")
    p.add_argument("--fsync", choices=("always", "everysec"), default="always")
    p.add_argument("--connections", default="64,512")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--secs", type=int, default=5)
    args = p.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    redis = Redis(fsync=args.fsync, server="redis-server") if args.queue == "redis" else None
    rows = {c: [] for c in counts}
    try:
        for i in range(args.rounds):
            for c in counts:
                cell = types.SimpleNamespace(scenario="e2e", secs=args.secs, connections=c)
                r = ab.one(args.binary, [], cell, redis)
                rows[c].append(r)
                print(f"round {i + 1}, {c} connections: {r['rate']:,.0f}/s, broker "
                      f"{r['broker_us']:.1f} µs, redis {r['redis_us']:.1f} µs, problems "
                      f"{r['problems']}", file=sys.stderr)
    finally:
        if redis:
            redis.stop()
    print(f"e2e, queue {args.queue}" + (f" (appendfsync {args.fsync})" if redis else "")
          + f", {args.rounds} rounds x {args.secs} s, medians")
    print("| connections | completed/s | broker CPU µs/completed | Redis CPU µs/completed | problems |")
    print("|---|---|---|---|---|")
    med = {}
    for c in counts:
        med[c] = statistics.median(r["rate"] for r in rows[c])
        print(f"| {c} | {med[c]:,.0f} | "
              f"{statistics.median(r['broker_us'] for r in rows[c]):.1f} | "
              f"{statistics.median(r['redis_us'] for r in rows[c]):.1f} | "
              f"{sum(r['problems'] for r in rows[c])} |")
    print(f"{counts[-1]} / {counts[0]}: {med[counts[-1]] / med[counts[0]]:.2f}")


if __name__ == "__main__":
    main()
