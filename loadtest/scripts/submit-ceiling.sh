#!/usr/bin/env bash
# Submit throughput of the broker against the do-nothing responder (the ceiling), same machine,
# same client, same pinning. Servers on CPU 0, wrk on CPU 1; a fresh broker per round; rounds
# alternate ceiling / broker so drift hits both. Prints each round, then medians and the ratio.
#
#   loadtest/scripts/submit-ceiling.sh [rounds=5] [seconds=6] [extra broker flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}; secs=${2:-6}; shift $(( $# >= 2 ? 2 : $# ))
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
cargo build --release -q -p openhqm -p loadtest
pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tick=$(getconf CLK_TCK)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened"; exit 1; }

# measure LABEL PID PORT -> "LABEL rps user_us sys_us"
measure() {
  read -r u0 s0 < <(awk '{print $14, $15}' /proc/$2/stat)
  out=$(taskset -c 1 wrk -t1 -c64 -d"${secs}"s -s loadtest/submit.lua "http://127.0.0.1:$3/api/v1/submit")
  read -r u1 s1 < <(awk '{print $14, $15}' /proc/$2/stat)
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  python3 -c "t=$tick; r=$reqs; print('$1', $rps, ($u1-$u0)/t/r*1e6, ($s1-$s0)/t/r*1e6, '${non2xx:-0}')"
}

null_port=$(pick_port)
target/release/loadtest null-server --port "$null_port" --cpu 0 2>/dev/null & pids+=($!)
null_pid=$!
wait_port "$null_port"
results=$(mktemp)
for r in $(seq "$rounds"); do
  measure ceiling "$null_pid" "$null_port" | tee -a "$results"
  port=$(pick_port)
  target/release/openhqm --shards 1 --cpus 0 --host 127.0.0.1 --port "$port" --log-level warn "$@" >/dev/null & bpid=$!
  pids+=($bpid)
  wait_port "$port"
  measure broker "$bpid" "$port" | tee -a "$results"
  kill "$bpid"; wait "$bpid" 2>/dev/null || true
done
python3 - "$results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def col(label, i): return [float(r[i]) for r in rows if r[0] == label]
c, b = col("ceiling", 1), col("broker", 1)
print(f"median req/s: ceiling {st.median(c):.0f}, broker {st.median(b):.0f}, ratio {st.median(b)/st.median(c):.2f}")
print(f"median CPU us/request (user+sys): ceiling {st.median(col('ceiling',2)):.2f}+{st.median(col('ceiling',3)):.2f}, "
      f"broker {st.median(col('broker',2)):.2f}+{st.median(col('broker',3)):.2f}")
bad = sum(int(float(r[4])) for r in rows if r[0] == "broker")
print(f"broker non-2xx responses: {bad}")
PY
