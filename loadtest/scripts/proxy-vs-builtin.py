#!/usr/bin/env python3
"""Proxy mode against the built-in operations, end to end, same run (issue 11's figure).

Alternates, per round, a broker running the built-in echo path and a broker whose every job is
forwarded (proxy.default_endpoint) to `loadtest null-server`. One shard: broker on CPU 0; the
generator and the null responder share CPU 1. Prints each round's completed/s and the TCP
connections the machine opened during the run (`nstat TcpActiveOpens`: the generator's 64 plus
one probe, and in the proxied run the broker's upstream connections).

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/proxy-vs-builtin.py [ROUNDS=3] [SECONDS=5]
"""
import json, os, subprocess, sys, time, socket, statistics
ROOT=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); BROKER=f"{ROOT}/target/release/openhqm"; LT=f"{ROOT}/target/release/loadtest"
def free_port():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
def wait_port(p):
    for _ in range(200):
        try: socket.create_connection(("127.0.0.1",p),0.2).close(); return
        except OSError: time.sleep(0.05)
    raise SystemExit("port never opened")
def active_opens():
    out=subprocess.run(["nstat","-az","TcpActiveOpens"],capture_output=True,text=True).stdout
    for l in out.splitlines():
        if l.startswith("TcpActiveOpens"): return int(l.split()[1])
    return 0
def run(proxied, secs):
    port=free_port(); cmd=[BROKER,"--host","127.0.0.1","--port",str(port),"--shards","1","--cpus","0","--log-level","warn"]
    null=None
    if proxied:
        up=free_port()
        null=subprocess.Popen([LT,"null-server","--port",str(up),"--cpu","1"],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
        wait_port(up)
        cmd+=["--proxy.enabled","true","--proxy.default_endpoint",f"http://127.0.0.1:{up}/"]
    b=subprocess.Popen(cmd,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    try:
        wait_port(port); time.sleep(0.3)
        a0=active_opens()
        out=subprocess.run([LT,"run","--url",f"http://127.0.0.1:{port}","--scenario","e2e","--cpus","1","--duration",f"{secs}s","--json","--no-progress"],capture_output=True,text=True,timeout=secs+120)
        a1=active_opens()
        r=json.loads(out.stdout)
        return r, a1-a0
    finally:
        b.terminate(); b.wait()
        if null: null.terminate(); null.wait()
rounds=int(sys.argv[1]) if len(sys.argv)>1 else 3; secs=int(sys.argv[2]) if len(sys.argv)>2 else 5
res={False:[],True:[]}
for i in range(rounds):
    for proxied in (False, True):
        r,opens=run(proxied,secs)
        res[proxied].append((r["completed_per_s"], opens, r["lost_ids"] + r["bad_responses"] + r["non_2xx"]))
        print(f"round {i+1} {'proxied' if proxied else 'builtin'}: {r['completed_per_s']:,.0f} completed/s, "
              f"tcp active opens {opens}, problems {res[proxied][-1][2]}", flush=True)
b=statistics.median(x[0] for x in res[False]); p=statistics.median(x[0] for x in res[True])
print(f"median builtin {b:,.0f}/s, proxied {p:,.0f}/s, ratio {p/b:.2f}")
