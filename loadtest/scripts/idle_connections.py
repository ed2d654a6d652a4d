#!/usr/bin/env python3
"""Memory per idle keep-alive connection: RSS of a fresh broker before and after N clients each
sent one request and then stayed connected.

    cargo build --release -p openhqm
    python3 loadtest/scripts/idle_connections.py [N=2000] [BROKER=target/release/openhqm]
"""
import os
import resource
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
resource.setrlimit(resource.RLIMIT_NOFILE, (N + 256, max(N + 256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))

s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
BINARY = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/release/openhqm")
broker = subprocess.Popen([BINARY, "--host", "127.0.0.1", "--port", str(port),
                           "--shards", "1", "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_kib():
    with open(f"/proc/{broker.pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.3)
    before = rss_kib()
    conns = []
    for _ in range(N):
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        conns.append(c)
    for c in conns:
        c.recv(4096)
    time.sleep(0.5)
    after = rss_kib()
    print(f"{N} idle connections: RSS {before} KiB -> {after} KiB, {(after - before) * 1024 / N:,.0f} bytes per connection")
    for c in conns:
        c.close()
finally:
    broker.terminate()
    broker.wait()
