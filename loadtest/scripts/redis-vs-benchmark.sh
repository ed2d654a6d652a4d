#!/usr/bin/env bash
# PERFORMANCE.md section 6: broker submits in Redis mode against what redis-benchmark gets from the
# same Redis with one pipelined XADD, per durability setting, alternating, on a fresh private
# Redis (AOF on, not pinned) each round. The broker is pinned to CPU 0, wrk to CPU 1.
#
#   cargo build --release
#   loadtest/scripts/redis-vs-benchmark.sh [ROUNDS=3] [SECONDS=5]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-5}
BROKER=target/release/openhqm
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

for fsync in always everysec; do
  : >/tmp/rvb.broker; : >/tmp/rvb.bench
  for round in $(seq "$ROUNDS"); do
    dir=$(mktemp -d); rport=$(free_port)
    redis-server --bind 127.0.0.1 --port "$rport" --dir "$dir" --appendonly yes --appendfsync "$fsync" --save '' >/dev/null &
    rpid=$!; pids+=("$rpid"); wait_port "$rport"
    bport=$(free_port)
    "$BROKER" --host 127.0.0.1 --port "$bport" --shards 1 --cpus 0 --log-level warn \
      --queue redis --queue.redis_url "redis://127.0.0.1:$rport" 2>/dev/null &
    bpid=$!; pids+=("$bpid"); wait_port "$bport"; sleep 0.3
    out=$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" -s loadtest/submit.lua "http://127.0.0.1:$bport/api/v1/submit")
    if grep -q 'Non-2xx' <<<"$out"; then echo "non-2xx answers from the broker:" >&2; echo "$out" >&2; exit 1; fi
    rps=$(awk '/Requests\/sec/ {print int($2)}' <<<"$out")
    kill "$bpid"; wait "$bpid" 2>/dev/null || true
    redis-cli -p "$rport" FLUSHALL >/dev/null
    xadd=$(redis-benchmark -p "$rport" -P 16 -n 200000 -q XADD s '*' f v | tr '\r' '\n' | awk -F'[: ]+' '/requests per second/ {for (i=1;i<=NF;i++) if ($i ~ /^[0-9.]+$/) {print int($i); exit}}')
    kill "$rpid"; wait "$rpid" 2>/dev/null || true
    rm -rf "$dir"
    echo "$fsync round $round: broker $rps submits/s, redis-benchmark XADD $xadd/s" >&2
    echo "$rps" >>/tmp/rvb.broker; echo "$xadd" >>/tmp/rvb.bench
  done
  b=$(median </tmp/rvb.broker); x=$(median </tmp/rvb.bench)
  echo "| $fsync | $(paste -sd' ' /tmp/rvb.broker | sed 's/ / · /g') | $(paste -sd' ' /tmp/rvb.bench | sed 's/ / · /g') | $(python3 -c "print(f'{$b/$x:.2f}')") |"
done
rm -f /tmp/rvb.broker /tmp/rvb.bench
