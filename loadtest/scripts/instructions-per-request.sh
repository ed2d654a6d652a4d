#!/usr/bin/env bash
# User-space instructions the broker executes per request, counted by callgrind: repeatable on a
# noisy machine where wall-clock CPU time is not. Runs the broker under valgrind twice, idle and
# with N submits (16 connections, generator on CPU 1), and prints (with - idle) / N. The epoll
# driver is used because valgrind does not follow io_uring's shared rings; the HTTP, queue and
# state work measured is the same with either driver.
#
#   cargo build --release -p openhqm -p loadtest
#   loadtest/scripts/instructions-per-request.sh [BINARY=target/release/openhqm] [N=10000] [broker flags...]
#   e.g. ... target/release/openhqm 5000 --queue redis --queue.redis_url redis://127.0.0.1:6379
#   (with Redis, FLUSHALL it between runs; its background ticks add a little noise)
#   SCENARIO=wait PROXY=1 ... target/release/openhqm 5000   # each request forwarded to
#   `loadtest null-server` (proxy endpoint `null`) and waited for: the proxy's cost per request
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/openhqm}
N=${2:-10000}
shift 2 2>/dev/null || shift $#
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SCENARIO=${SCENARIO:-submit}
LOADTEST_ARGS=()
null_pid=
if [ "${PROXY:-0}" = 1 ]; then
  up=$(free_port)
  target/release/loadtest null-server --port "$up" --cpu 1 >/dev/null 2>&1 &
  null_pid=$!
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$up") 2>/dev/null && break; sleep 0.05; done
  trap 'kill "$null_pid" 2>/dev/null' EXIT
  set -- "$@" --proxy.enabled true --proxy.endpoints.null.url "http://127.0.0.1:$up/"
  LOADTEST_ARGS=(--endpoint null)
fi

run() {
  local n=$1 port out pid
  shift
  port=$(free_port)
  out=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$BIN" --host 127.0.0.1 --port "$port" \
    --shards 1 --cpus 0 --log-level error --server.io_driver epoll "$@" >/dev/null 2>"$out/valgrind.log" &
  pid=$!
  for _ in $(seq 150); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
  if [ "$n" -gt 0 ]; then
    target/release/loadtest run --url "http://127.0.0.1:$port" --scenario "$SCENARIO" --cpus 1 \
      --connections 16 --requests "$n" --no-progress --fail-on-errors "${LOADTEST_ARGS[@]}" >/dev/null
  fi
  sleep 1
  if ! kill -TERM "$pid" 2>/dev/null; then
    echo "the broker exited early:" >&2; cat "$out/valgrind.log" >&2; exit 1
  fi
  wait "$pid" || true
  grep -h '^summary' "$out"/cg.* | awk '{s += $2} END {print s}'
  rm -rf "$out"
}

idle=$(run 0 "$@")
loaded=$(run "$N" "$@")
echo "idle $idle, with $N requests $loaded: $(( (loaded - idle) / N )) instructions per request"
