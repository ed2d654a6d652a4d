#!/usr/bin/env python3
"""Proxy mode against the built-in operations, end to end, same run (issue 11's figure).

Alternates, per round, a broker running the built-in echo path and a broker whose every job is
forwarded to `loadtest null-server` (endpoint `null`, named by each submit through
`loadtest --endpoint null`). One shard: broker on CPU 0; the generator and the null responder
share CPU 1. Prints each round's completed/s, the broker's CPU time (user + system, from
/proc, the kernel's part apart) per completed request, and the TCP connections the machine opened during the run
(`nstat TcpActiveOpens`: the generator's 64 plus one probe, and in the proxied run the broker's
upstream connections).

    cargo build --release -p openhqm -p loadtest
    python3 loadtest/scripts/proxy-vs-builtin.py [ROUNDS=3] [SECONDS=5] [BROKER OPTIONS...]
    SCENARIO=wait python3 loadtest/scripts/proxy-vs-builtin.py 3 5   # submit-and-wait, no polls
    BROKER=/tmp/openhqm-before python3 loadtest/scripts/proxy-vs-builtin.py 3 5   # another build
"""
import json, os, subprocess, sys, time, socket, statistics
ROOT=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); BROKER=os.environ.get("BROKER",f"{ROOT}/target/release/openhqm"); LT=f"{ROOT}/target/release/loadtest"
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
def cpu_secs(pid):
    f=open(f"/proc/{pid}/stat").read().rsplit(")",1)[1].split()
    t=os.sysconf("SC_CLK_TCK"); return int(f[11])/t, int(f[12])/t
def run(proxied, secs):
    port=free_port(); cmd=[BROKER,"--host","127.0.0.1","--port",str(port),"--shards","1","--cpus","0","--log-level","warn"]+EXTRA
    null=None
    if proxied:
        up=free_port()
        null=subprocess.Popen([LT,"null-server","--port",str(up),"--cpu","1"],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
        wait_port(up)
        cmd+=["--proxy.enabled","true","--proxy.endpoints.null.url",f"http://127.0.0.1:{up}/","--proxy.endpoints.null.max_connections","64"]
    b=subprocess.Popen(cmd,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
    try:
        wait_port(port); time.sleep(0.3)
        a0=active_opens(); u0,s0=cpu_secs(b.pid)
        out=subprocess.run([LT,"run","--url",f"http://127.0.0.1:{port}","--scenario",SCENARIO,"--cpus","1","--duration",f"{secs}s","--json","--no-progress"]+(["--endpoint","null"] if proxied else []),capture_output=True,text=True,timeout=secs+120)
        a1=active_opens(); u1,s1=cpu_secs(b.pid)
        r=json.loads(out.stdout)
        n=max(1,r["completed"])
        r["cpu_us_per_completed"]=(u1-u0+s1-s0)*1e6/n
        r["sys_us_per_completed"]=(s1-s0)*1e6/n
        r["requests_per_completed"]=r["requests"]/max(1,r["completed"])
        return r, a1-a0
    finally:
        b.terminate(); b.wait()
        if null: null.terminate(); null.wait()
SCENARIO=os.environ.get("SCENARIO","e2e")
EXTRA=sys.argv[3:]  # more broker options, e.g. --server.io_driver epoll
rounds=int(sys.argv[1]) if len(sys.argv)>1 else 3; secs=int(sys.argv[2]) if len(sys.argv)>2 else 5
res={False:[],True:[]}
for i in range(rounds):
    for proxied in (False, True):
        r,opens=run(proxied,secs)
        res[proxied].append((r["completed_per_s"], opens, r["lost_ids"] + r["bad_responses"] + r["non_2xx"], r["cpu_us_per_completed"]))
        print(f"round {i+1} {'proxied' if proxied else 'builtin'}: {r['completed_per_s']:,.0f} completed/s, "
              f"broker CPU {r['cpu_us_per_completed']:.2f} us/completed "
              f"({r['sys_us_per_completed']:.2f} in the kernel), "
              f"HTTP requests (submit + polls) per completed {r['requests_per_completed']:.2f}, "
              f"tcp active opens {opens}, problems {res[proxied][-1][2]}", flush=True)
b=statistics.median(x[0] for x in res[False]); p=statistics.median(x[0] for x in res[True])
bc=statistics.median(x[3] for x in res[False]); pc=statistics.median(x[3] for x in res[True])
print(f"median builtin {b:,.0f}/s, proxied {p:,.0f}/s, ratio {p/b:.2f}; "
      f"broker CPU per completed: builtin {bc:.2f} us, proxied {pc:.2f} us, builtin/proxied {bc/pc:.2f}")
# Each round's two runs are minutes apart at most: the median of the rounds' own ratios is the
# steadier figure on a machine whose speed drifts between rounds.
rr=statistics.median(p[0]/b[0] for b,p in zip(res[False],res[True]))
rc=statistics.median(b[3]/p[3] for b,p in zip(res[False],res[True]))
print(f"median of per-round ratios: completed/s {rr:.2f}, CPU builtin/proxied {rc:.2f}")
