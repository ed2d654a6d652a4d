#!/usr/bin/env python3
"""Soak: mixed load on two brokers sharing one Redis while Redis restarts and brokers are killed;
afterwards every accepted correlation id must reach a final state (issue 12, item 8).

Started here, all on loopback and free ports, data and logs in one temp dir:
- redis-server (`appendonly yes`, `appendfsync always`, `noeviction`), restarted at intervals on
  the same port and data dir, alternately after SIGTERM and SIGKILL;
- two brokers (`queue.type = redis`, the same `--shards`), one of them at intervals killed with
  SIGKILL and started again on the same port (same consumer names, so it re-reads its pending
  entries); proxy mode on, with one endpoint `counter`;
- `counter`: a small HTTP upstream (this script, `_upstream`) that counts the calls per
  `X-Correlation-ID` and answers `{"id": <that id>, "n": <calls so far>}`: the exact number of
  times each such job was processed;
- the load: THREADS Python clients (keep-alive, failing over to the other broker) that record
  every id answered 202/200: single submits (echo, uppercase, reverse, error, counter),
  submit-and-wait, batches, Idempotency-Key submits retried with the same key after a 503 or a
  broken connection, submit + cancel, and status reads of accepted ids. `loadtest` has no log
  of the ids it was given, so this client is the record; with --loadtest-rate R, `loadtest run
  --scenario e2e` adds open-loop pressure on broker A and reports its own lost/duplicate ids.

After the load stops, every recorded id is read with GET /api/v1/response/{id} until all are
final or --drain seconds pass. An id is LOST when it is unknown (404) or still not final then;
WRONG when final in another state than its operation asks (`error` ends FAILED with the error
"Simulated error", a cancelled one CANCELLED, everything else COMPLETED) or with another result. Exit 1 when anything is lost or
wrong, an idempotency key answered two ids, or a status read of an accepted id said 404.

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/soak.py [SECONDS=120] [--shards 2] [--threads 6]
        [--fault-every 10] [--loadtest-rate 0] [--drain 180] [--keep]
"""
import argparse
import collections
import http.client
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import BROKER, LOADTEST, free_port, wait_port  # noqa: E402

FINAL = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"}
NOT_FINAL = {"PENDING", "PROCESSING"}
JSON = {"Content-Type": "application/json"}


# ---------------------------------------------------------------------------------------------
# The counting upstream (a process of its own: `soak.py _upstream PORT`).

def upstream(port):
    counts = collections.Counter()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            cid = self.headers.get("X-Correlation-ID", "")
            with lock:
                counts[cid] += 1
                n = counts[cid]
            self.answer({"id": cid, "n": n})

        def do_GET(self):
            with lock:
                self.answer(dict(counts))

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)  # a killed broker's reset is not

    server = Server(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


# ---------------------------------------------------------------------------------------------
# Processes, each stopped by its PID at exit.

class Procs:
    """Every process this script started, so that exit stops them all by PID."""

    def __init__(self):
        self.live = []

    def start(self, args, log, env=None):
        out = open(log, "ab")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        out.close()
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=15):
        if p.poll() is None:
            os.kill(p.pid, sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        if p in self.live:
            self.live.remove(p)

    def stop_all(self):
        for p in list(self.live):
            self.stop(p, signal.SIGTERM, 5)


class Redis:
    def __init__(self, procs, tmp):
        self.procs, self.dir, self.port = procs, os.path.join(tmp, "redis"), free_port()
        os.makedirs(self.dir)
        self.proc = None

    def start(self):
        self.proc = self.procs.start(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--protected-mode", "yes"],
            os.path.join(self.dir, "..", "redis.log"))
        end = time.time() + 60
        while time.time() < end:  # PONG only once the AOF is loaded (LOADING before)
            r = subprocess.run(["redis-cli", "-p", str(self.port), "PING"], capture_output=True,
                               text=True)
            if r.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not come back")

    def stop(self, sig):
        self.procs.stop(self.proc, sig)


class Broker:
    def __init__(self, procs, tmp, name, redis_port, upstream_port, shards):
        self.procs, self.name, self.port = procs, name, free_port()
        self.log = os.path.join(tmp, f"broker-{name}.log")
        self.args = [BROKER, "--host", "127.0.0.1", "--port", str(self.port), "--shards",
                     str(shards), "--queue", "redis", "--queue.redis_url",
                     f"redis://127.0.0.1:{redis_port}", "--worker.retry_delay_base", "0.2",
                     "--worker.retry_delay_max", "2", "--log-format", "text"]
        self.env = dict(os.environ, OPENHQM_PROXY__ENABLED="true",
                        OPENHQM_PROXY__ENDPOINTS__COUNTER__URL=f"http://127.0.0.1:{upstream_port}/work")
        self.proc = None
        self.lifetimes = []  # last scraped counters of each process, by pid

    def start(self):
        with open(self.log, "a") as f:
            f.write(f"==== soak: start {time.strftime('%H:%M:%S')}\n")
        for _ in range(20):
            self.proc = self.procs.start(self.args, self.log, self.env)
            end = time.time() + 15
            while time.time() < end and self.proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    self.lifetimes.append({"pid": self.proc.pid})
                    return
                except OSError:
                    time.sleep(0.05)
            self.procs.stop(self.proc, signal.SIGKILL)
            time.sleep(0.5)  # it exited (the port not free yet?) or never listened
        raise RuntimeError(f"broker {self.name} did not start; see {self.log}")

    def kill(self):
        self.procs.stop(self.proc, signal.SIGKILL)


METRICS = ("openhqm_queue_publish_total", "openhqm_queue_consume_total",
           "openhqm_queue_retries_total", "openhqm_queue_dlq_total",
           "openhqm_redis_reconnects_total")


def scrape(broker):
    """This broker process's counters (summed over labels), into its lifetime record."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", broker.port, timeout=2)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except OSError:
        return
    got = collections.Counter()
    for line in text.splitlines():
        for m in METRICS:
            if line.startswith(m) and 'status="failure"' not in line:
                got[m] += float(line.rsplit(" ", 1)[1])
    if broker.lifetimes and broker.proc and broker.lifetimes[-1]["pid"] == broker.proc.pid:
        broker.lifetimes[-1].update(got)


# ---------------------------------------------------------------------------------------------
# The load: every accepted id recorded with what its final state must be.

class Record:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.ids = {}  # id -> (kind, allowed final statuses, expected output (error if FAILED) or None)
        self.idem = {}  # idempotency key -> id
        self.counts = collections.Counter()
        self.anomalies = []
        self.file = open(path, "a")

    def accept(self, cid, kind, allowed, output=None):
        with self.lock:
            if cid in self.ids and kind != "idem":
                self.anomalies.append(f"id {cid} answered twice ({self.ids[cid][0]}, {kind})")
            self.ids[cid] = (kind, allowed, output)
            self.counts["accepted"] += 1
            self.file.write(f"{time.time():.3f} {cid} {kind} {'|'.join(sorted(allowed))}\n")
            self.file.flush()

    def count(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def anomaly(self, text):
        with self.lock:
            self.anomalies.append(f"{time.strftime('%H:%M:%S')} {text}")

    def sample(self):
        with self.lock:
            return random.choice(list(self.ids)) if self.ids else None


def expected_output(op, data):
    return {"echo": data, "uppercase": data.upper(), "reverse": data[::-1]}.get(op)


class Client:
    """One keep-alive connection per broker; a broken one is dropped and the other broker used."""

    def __init__(self, brokers, rng):
        self.brokers, self.rng = brokers, rng
        self.conns = {}
        self.prefer = rng.randrange(len(brokers))

    def call(self, method, path, body=None, headers=None):
        """(status, headers, parsed body); raises OSError/HTTPException when the connection broke."""
        b = self.brokers[self.prefer]
        c = self.conns.get(b.name)
        if c is None:
            c = self.conns[b.name] = http.client.HTTPConnection("127.0.0.1", b.port, timeout=15)
        try:
            data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
            c.request(method, path, body=data,
                      headers={**JSON, **(headers or {})} if body is not None else (headers or {}))
            r = c.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException):
            c.close()
            del self.conns[b.name]
            self.prefer = (self.prefer + 1) % len(self.brokers)
            raise
        if r.getheader("Connection", "").lower() == "close":
            c.close()
            del self.conns[b.name]
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return r.status, r, parsed


OPS = [("echo", 40), ("uppercase", 15), ("reverse", 15), ("error", 5), ("counter", 25)]
ACTIONS = [("submit", 45), ("wait", 10), ("batch", 8), ("idem", 12), ("cancel", 5), ("status", 20)]


def job(rng, seq):
    op = rng.choices([o for o, _ in OPS], [w for _, w in OPS])[0]
    # Half of them not ASCII: the submit parser's fast path takes only ASCII bodies.
    data = f"soak {seq} {'é' if rng.random() < 0.5 else 'e'} {rng.randrange(1 << 30)}"
    if op == "counter":
        return op, {"payload": {"data": data}, "metadata": {"endpoint": "counter"}}, {"COMPLETED"}, None
    if op == "error":  # FAILED after its retries, with the processor's error
        return op, {"payload": {"operation": op, "data": data}}, {"FAILED"}, "Simulated error"
    return op, {"payload": {"operation": op, "data": data}}, {"COMPLETED"}, expected_output(op, data)


def load_thread(index, brokers, rec, stop_at):
    rng = random.Random(index * 7919 + int(time.time()))
    client = Client(brokers, rng)
    seq = 0
    while time.time() < stop_at:
        seq += 1
        action = rng.choices([a for a, _ in ACTIONS], [w for _, w in ACTIONS])[0]
        try:
            pause = one_action(action, client, rng, rec, f"{index}-{seq}")
        except (OSError, http.client.HTTPException):
            rec.count(f"{action}: broken connection")
            pause = 0.05
        if pause:
            time.sleep(pause)


def one_action(action, client, rng, rec, seq):
    """Returns how long to pause (after a 503)."""
    if action == "status":
        cid = rec.sample()
        if cid is None:
            return 0
        st, _, body = client.call("GET", f"/api/v1/status/{cid}")
        rec.count(f"status: {st}")
        if st == 404:
            rec.anomaly(f"status of accepted id {cid} answered 404")
        elif st == 200 and (body or {}).get("status") not in FINAL | NOT_FINAL:
            rec.anomaly(f"status of {cid}: {body}")
        return 0.05 if st == 503 else 0
    op, body, allowed, output = job(rng, seq)
    if action in ("submit", "wait"):
        headers = {"Prefer": "wait=2"} if action == "wait" else {}
        st, _, reply = client.call("POST", "/api/v1/submit", body, headers)
        rec.count(f"{action}: {st}")
        if st in (200, 202) and reply and "correlation_id" in reply:
            rec.accept(reply["correlation_id"], op, allowed, output)
            if st == 200 and reply.get("status") not in allowed:
                rec.anomaly(f"wait answered {reply.get('status')} for {reply['correlation_id']} ({op})")
        elif st in (200, 202):
            rec.anomaly(f"{action} {st} without an id: {reply}")
        return 0.05 if st == 503 else 0
    if action == "batch":
        items = [job(rng, f"{seq}.{i}") for i in range(5)]
        st, _, reply = client.call("POST", "/api/v1/submit/batch",
                                   {"requests": [b for _, b, _, _ in items]})
        rec.count(f"batch: {st}")
        if st == 200:
            for (op, _, allowed, output), r in zip(items, reply["results"]):
                if "correlation_id" in r:
                    rec.accept(r["correlation_id"], op, allowed, output)
                else:
                    rec.anomaly(f"batch item refused: {r}")
        return 0.05 if st == 503 else 0
    if action == "idem":
        # A client that must not submit twice: the same key again after a 503 or a broken
        # connection, on either broker, until it has an answer.
        key = f"soak-{seq}-{rng.randrange(1 << 40)}"
        for _ in range(150):
            try:
                st, resp, reply = client.call("POST", "/api/v1/submit", body,
                                              {"Idempotency-Key": key})
            except (OSError, http.client.HTTPException):
                rec.count("idem: broken connection, retried")
                time.sleep(0.1)
                continue
            rec.count(f"idem: {st}" + (" replayed" if resp.getheader("Idempotent-Replayed") else ""))
            if st in (200, 202):
                cid = reply["correlation_id"]
                with rec.lock:
                    first = rec.idem.setdefault(key, cid)
                if first != cid:
                    rec.anomaly(f"idempotency key {key} answered {first} and then {cid}")
                rec.accept(cid, op, allowed, output)
                return 0
            if st != 503:
                rec.anomaly(f"idempotent submit answered {st}: {reply}")
                return 0
            time.sleep(0.1)
        rec.count("idem: gave up")
        return 0
    if action == "cancel":
        body = {"payload": {"operation": "echo", "data": f"cancel {seq}"}}
        st, _, reply = client.call("POST", "/api/v1/submit", body)
        rec.count(f"cancel-submit: {st}")
        if st != 202:
            return 0.05 if st == 503 else 0
        cid = reply["correlation_id"]
        try:
            dst, _, dreply = client.call("DELETE", f"/api/v1/requests/{cid}")
        except (OSError, http.client.HTTPException):
            dst = None
        rec.count(f"cancel: {dst}")
        if dst == 200:
            rec.accept(cid, "cancelled", {"CANCELLED"})
        elif dst == 409:
            rec.accept(cid, "cancel-too-late", {"COMPLETED"}, f"cancel {seq}")
        else:  # unknown outcome: either is right
            rec.accept(cid, "cancel-unknown", {"COMPLETED", "CANCELLED"})
            if dst == 404:
                rec.anomaly(f"cancel of accepted id {cid} answered 404")
        return 0
    raise AssertionError(action)


# ---------------------------------------------------------------------------------------------
# Verification.

def verify(brokers, rec, drain_s, threads):
    """Reads every recorded id until final or the drain deadline; returns the classification."""
    todo = dict(rec.ids)
    result = {"final_ok": 0, "wrong": [], "missing": [], "not_final": [], "final_by": collections.Counter()}
    deadline = time.time() + drain_s
    lock = threading.Lock()
    rounds = 0
    while todo and time.time() < deadline:
        rounds += 1
        items = list(todo.items())
        chunks = [items[i::threads] for i in range(threads)]
        still = {}

        def work(chunk, index):
            client = Client(brokers, random.Random(index))
            for cid, (kind, allowed, output) in chunk:
                for _ in range(5):
                    try:
                        st, _, body = client.call("GET", f"/api/v1/response/{cid}")
                        break
                    except (OSError, http.client.HTTPException):
                        time.sleep(0.2)
                else:
                    st, body = None, None
                with lock:
                    if st == 200 and body and body.get("status") in FINAL:
                        result["final_by"][body["status"]] += 1
                        got = (body.get("result") or {})
                        bad = body["status"] not in allowed
                        if not bad and output is not None and body["status"] == "COMPLETED":
                            bad = got.get("output") != output
                        if not bad and output is not None and body["status"] == "FAILED":
                            bad = body.get("error") != output
                        if not bad and kind == "counter":
                            bad = got.get("id") != cid
                        if bad:
                            result["wrong"].append((cid, kind, sorted(allowed), body))
                        else:
                            result["final_ok"] += 1
                    elif st == 404:
                        result["missing"].append((cid, kind))
                    else:
                        still[cid] = (kind, allowed, output)

        ts = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(chunks)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        todo = still
        if todo:
            print(f"drain: {len(todo)} not final yet (round {rounds})", file=sys.stderr, flush=True)
            time.sleep(1)
    result["not_final"] = list(todo.items())
    return result


# ---------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("seconds", nargs="?", type=int, default=120)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--threads", type=int, default=6, help="load client threads")
    p.add_argument("--fault-every", type=float, default=10.0, help="seconds between two faults")
    p.add_argument("--loadtest-rate", type=float, default=0.0,
                   help="also run loadtest e2e at this rate on broker A (0: off)")
    p.add_argument("--drain", type=float, default=180.0, help="longest wait for finals after the load")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, AOF, id log)")
    args = p.parse_args()
    for binary in (BROKER,) + ((LOADTEST,) if args.loadtest_rate else ()):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} missing: cargo build --release -p openhqm -p loadtest")

    tmp = tempfile.mkdtemp(prefix="openhqm-soak-")
    procs = Procs()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    failed = True
    try:
        failed = run(args, tmp, procs)
    finally:
        procs.stop_all()
        if failed or args.keep:
            print(f"logs, AOF and the id log kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


def run(args, tmp, procs):
    events = open(os.path.join(tmp, "events.log"), "a")

    def event(text):
        line = f"{time.strftime('%H:%M:%S')} +{time.time() - t0:6.1f}s {text}"
        events.write(line + "\n")
        events.flush()
        print(line, file=sys.stderr, flush=True)

    t0 = time.time()
    up_port = free_port()
    procs.start([sys.executable, os.path.abspath(__file__), "_upstream", str(up_port)],
                os.path.join(tmp, "upstream.log"))
    wait_port(up_port)
    redis = Redis(procs, tmp)
    redis.start()
    brokers = [Broker(procs, tmp, n, redis.port, up_port, args.shards) for n in "AB"]
    for b in brokers:
        b.start()
    event(f"redis :{redis.port}, brokers A :{brokers[0].port} B :{brokers[1].port}, "
          f"{args.shards} shards, upstream :{up_port}, dir {tmp}")

    rec = Record(os.path.join(tmp, "ids.log"))
    stop_at = time.time() + args.seconds
    lt = None
    if args.loadtest_rate:
        lt = subprocess.Popen(
            [LOADTEST, "run", "--url", f"http://127.0.0.1:{brokers[0].port}", "--scenario", "e2e",
             "--rate", str(args.loadtest_rate), "--connections", "16", "--duration",
             f"{args.seconds}s", "--deadline", f"{int(args.drain)}s", "--poll-interval", "50ms",
             "--json", "--no-progress"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "loadtest.log"), "ab"),
            text=True, start_new_session=True)
        procs.live.append(lt)
    loaders = [threading.Thread(target=load_thread, args=(i, brokers, rec, stop_at), daemon=True)
               for i in range(args.threads)]
    for t in loaders:
        t.start()

    faults = collections.Counter()
    next_fault, n = time.time() + args.fault_every, 0
    while time.time() < stop_at:
        for b in brokers:
            scrape(b)
        if time.time() >= next_fault and time.time() < stop_at - 2:
            if n % 2 == 0:
                sig = signal.SIGTERM if n % 4 == 0 else signal.SIGKILL
                event(f"redis: {sig.name}")
                redis.stop(sig)
                time.sleep(1)
                redis.start()
                faults[f"redis restarts ({sig.name})"] += 1
                event("redis: up")
            else:
                b = brokers[(n // 2) % 2]
                event(f"broker {b.name}: SIGKILL (pid {b.proc.pid})")
                b.kill()
                time.sleep(0.5)
                b.start()
                faults["broker kills (SIGKILL)"] += 1
                event(f"broker {b.name}: up (pid {b.proc.pid})")
            n += 1
            next_fault = time.time() + args.fault_every
        time.sleep(0.5)
    for t in loaders:
        t.join()
    event(f"load stopped: {rec.counts['accepted']} ids accepted")

    lt_result = None
    if lt:
        out, _ = lt.communicate(timeout=args.drain + 120)
        procs.live.remove(lt)
        try:
            lt_result = json.loads(out)
        except ValueError:
            lt_result = {"error": out[-500:]}
        event("loadtest finished")

    v = verify(brokers, rec, args.drain, args.threads)
    event(f"verified: {v['final_ok']} final as expected")
    for b in brokers:
        scrape(b)
    c = http.client.HTTPConnection("127.0.0.1", up_port, timeout=10)
    c.request("GET", "/counts")
    calls = json.loads(c.getresponse().read())
    c.close()

    # Duplicates, exactly, where the upstream counted them.
    counter_ids = [cid for cid, (kind, _, _) in rec.ids.items() if kind == "counter"]
    dup_counter = sum(max(0, calls.get(cid, 0) - 1) for cid in counter_ids)
    never_called = [cid for cid in counter_ids if calls.get(cid, 0) == 0]
    unrecorded_calls = sum(1 for cid in calls if cid not in rec.ids)
    # Deliveries from the brokers' own counters (each process's last scrape; a killed process's
    # last second is missed, so a lower bound).
    tot = collections.Counter()
    for b in brokers:
        for life in b.lifetimes:
            for m in METRICS:
                tot[m] += life.get(m, 0)

    lost = len(v["missing"]) + len(v["not_final"])
    wrong = len(v["wrong"])
    lt_lost = (lt_result or {}).get("lost_ids", 0) + (lt_result or {}).get("duplicate_ids", 0)
    lines = [
        f"soak: {args.seconds} s, 2 brokers x {args.shards} shards on one Redis "
        f"(appendfsync always), {args.threads} client threads, a fault every {args.fault_every:g} s",
        "faults: " + ", ".join(f"{k} {v_}" for k, v_ in sorted(faults.items())),
        f"ids accepted {len(rec.ids)} ({rec.counts['accepted']} acceptances), "
        f"final as expected {v['final_ok']}, LOST {lost} (unknown {len(v['missing'])}, "
        f"not final after the drain {len(v['not_final'])}), WRONG {wrong}",
        "final states: " + ", ".join(f"{k} {n}" for k, n in sorted(v["final_by"].items())),
        f"duplicates processed (counter endpoint, exact): {dup_counter} extra calls over "
        f"{len(counter_ids)} ids; completed without a call: {len(never_called)}; calls for ids "
        f"never answered 202 (their submit's answer was lost): {unrecorded_calls}",
        "broker counters (summed over process lifetimes, lower bounds): "
        + ", ".join(f"{m.replace('openhqm_', '')} {tot[m]:.0f}" for m in METRICS),
        "wrong by error: " + ", ".join(f"{e!r} {n}" for e, n in collections.Counter(
            body.get("error") for _, _, _, body in v["wrong"]).most_common()),
        f"anomalies: {len(rec.anomalies)}",
        "client answers: " + ", ".join(f"{k} {n}" for k, n in sorted(rec.counts.items())
                                       if k != "accepted"),
    ]
    if lt_result is not None:
        keys = ("requests", "completed", "lost_ids", "duplicate_ids", "transport_errors",
                "non_2xx", "bad_responses")
        lines.append("loadtest e2e on broker A: "
                     + ", ".join(f"{k} {lt_result.get(k)}" for k in keys))
    for a in rec.anomalies[:20]:
        lines.append(f"  anomaly: {a}")
    for cid, kind in v["missing"][:20]:
        lines.append(f"  lost (404): {cid} ({kind})")
    for cid, (kind, _, _) in v["not_final"][:20]:
        lines.append(f"  lost (not final): {cid} ({kind})")
    for cid, kind, allowed, body in v["wrong"][:20]:
        lines.append(f"  wrong: {cid} ({kind}, wanted {allowed}): {json.dumps(body)[:300]}")
    summary = "\n".join(lines)
    print(summary)
    with open(os.path.join(tmp, "summary.txt"), "w") as f:
        f.write(summary + "\n")
    return bool(lost or wrong or rec.anomalies or lt_lost or never_called)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_upstream":
        upstream(int(sys.argv[2]))
    else:
        main()
