"""`portcullis serve` under attack, on loopback: every attack at once for ATTACK_SECONDS while a
prober sends a legitimate request every 100 ms, then descriptor exhaustion under a low
`ulimit -n`. Passes when every probe was answered within 1 s, the server's memory stayed
bounded and its CPU did not spin.

Attacks: slowloris (300 connections sending a header byte every few seconds), pipeliners that
send hundreds of requests and never read, a 100 MiB header line, request smuggling (both
Content-Length and Transfer-Encoding), and, in a second server limited to 256 descriptors,
1000 idle connections.

Usage: python3 ci/serve-abuse.py BIN CONFIG WORKDIR
"""

import os
import resource
import socket
import subprocess
import sys
import threading
import time

BIN, CONFIG, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
ATTACK_SECONDS = float(os.environ.get("ATTACK_SECONDS", "20"))
PROBE = b"GET /api/v1/things HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer probe\r\nConnection: close\r\n\r\n"
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", flush=True)


def start(name, nofile=None):
    data = os.path.join(WORK, name)
    def limit():
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    p = subprocess.Popen(
        [BIN, "serve", "--config", CONFIG, "--listen", "127.0.0.1:0", "--data", data,
         "--header-timeout", "5", "--idle-timeout", "10", "--request-timeout", "5"],
        stdout=subprocess.PIPE, stderr=open(os.path.join(WORK, name + ".err"), "w"),
        preexec_fn=limit, text=True)
    line = p.stdout.readline()
    if "http://" not in line:
        raise SystemExit(f"{name}: the server printed no address: {line!r}")
    host, port = line.strip().rsplit("http://", 1)[1].split(":")
    threading.Thread(target=lambda: p.stdout.read(), daemon=True).start()
    return p, (host, int(port))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def probe_once(addr):
    t0 = time.monotonic()
    try:
        s = socket.create_connection(addr, timeout=5)
        s.sendall(PROBE)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/1.1 ") else "none"
    except OSError as e:
        status = f"error {e}"
    return time.monotonic() - t0, status


def prober(addr, stop, results):
    while not stop.is_set():
        results.append(probe_once(addr))
        time.sleep(0.1)


def slowloris(addr, stop, count=300):
    socks = []
    for _ in range(count):
        try:
            s = socket.create_connection(addr, timeout=5)
            s.sendall(b"GET /api/v1/things HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        except OSError:
            pass
    reopened = 0
    while not stop.is_set():
        for i, s in enumerate(socks):
            try:
                s.sendall(b"X-a: b\r\n")
            except OSError:
                # Cut by the server: an attacker comes back.
                try:
                    socks[i] = socket.create_connection(addr, timeout=5)
                    socks[i].sendall(b"GET / HTTP/1.1\r\n")
                    reopened += 1
                except OSError:
                    pass
        stop.wait(2)
    for s in socks:
        s.close()
    print(f"slowloris: {count} connections, {reopened} reopened after the server cut them", flush=True)


def pipeliner(addr, stop):
    # Hundreds of pipelined requests, never reading an answer.
    req = b"GET /api/v1/things HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pipe\r\n\r\n" * 500
    while not stop.is_set():
        try:
            s = socket.create_connection(addr, timeout=5)
            s.settimeout(1)
            while not stop.is_set():
                s.sendall(req)
        except OSError:
            pass
        stop.wait(0.5)


def huge_header(addr, stop, results):
    # One header line of 100 MiB: refused once the head is past the cap, never buffered whole.
    chunk = b"a" * (1 << 20)
    sent = 0
    try:
        s = socket.create_connection(addr, timeout=5)
        s.sendall(b"GET /api/v1/things HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(100):
            s.sendall(chunk)
            sent += 1
        results.append(f"sent all {sent} MiB")
    except OSError as e:
        results.append(f"cut after {sent} MiB ({e.__class__.__name__})")


def smuggle(addr):
    body = b"0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    req = (b"POST /api/v1/things HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" % len(body)) + body
    s = socket.create_connection(addr, timeout=5)
    s.sendall(req)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    return data.count(b"HTTP/1.1 ")


def check_probes(results, what):
    if not results:
        fail(f"{what}: no probe ran")
        return
    slow = [(round(t, 2), st) for t, st in results if t > 1.0 or st not in ("200", "429")]
    worst = max(t for t, _ in results)
    print(f"{what}: {len(results)} probes, slowest {worst:.3f} s", flush=True)
    if slow:
        fail(f"{what}: {len(slow)} probes slower than 1 s or unanswered: {slow[:5]}")


# Phase 1: every attack at once.
server, addr = start("attack")
try:
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    stop = threading.Event()
    probes, big = [], []
    threads = [threading.Thread(target=prober, args=(addr, stop, probes))]
    threads += [threading.Thread(target=slowloris, args=(addr, stop))]
    threads += [threading.Thread(target=pipeliner, args=(addr, stop)) for _ in range(4)]
    threads += [threading.Thread(target=huge_header, args=(addr, stop, big))]
    for t in threads:
        t.start()
    responses = smuggle(addr)
    if responses != 1:
        fail(f"a smuggling attempt got {responses} responses: a second request was read from a body")
    peak = 0.0
    while time.monotonic() - t0 < ATTACK_SECONDS:
        peak = max(peak, rss_mib(server.pid))
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    cpu = cpu_seconds(server.pid) - cpu0
    wall = time.monotonic() - t0
    print(f"huge header: {big}; peak RSS {peak:.0f} MiB; server CPU {cpu:.1f} s over {wall:.1f} s", flush=True)
    check_probes(probes, "under attack")
    if big and big[0].startswith("sent all"):
        fail("a 100 MiB header line was read whole")
    if peak > 256:
        fail(f"memory grew to {peak:.0f} MiB")
    # A spinning thread would use a whole core; serving the attack takes a fraction.
    if cpu > 0.8 * wall:
        fail(f"the server used {cpu:.1f} s of CPU in {wall:.1f} s")
    # Once the attack stops, the server is idle: no busy loop left behind.
    cpu1 = cpu_seconds(server.pid)
    time.sleep(2)
    idle = cpu_seconds(server.pid) - cpu1
    print(f"idle after the attack: {idle:.2f} s CPU in 2 s", flush=True)
    if idle > 0.5:
        fail(f"the server kept using CPU after the attack: {idle:.2f} s in 2 s")
finally:
    server.terminate()
    server.wait(timeout=20)

# Phase 2: more connections than descriptors.
server, addr = start("fds", nofile=256)
try:
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    stop = threading.Event()
    probes = []
    hog = []
    def hogger():
        while not stop.is_set() and len(hog) < 1000:
            try:
                hog.append(socket.create_connection(addr, timeout=2))
            except OSError:
                stop.wait(0.05)
    threads = [threading.Thread(target=hogger), threading.Thread(target=prober, args=(addr, stop, probes))]
    for t in threads:
        t.start()
    time.sleep(min(ATTACK_SECONDS, 10))
    stop.set()
    for t in threads:
        t.join(timeout=30)
    cpu = cpu_seconds(server.pid) - cpu0
    wall = time.monotonic() - t0
    print(f"descriptors: {len(hog)} idle connections opened against 256 descriptors; server CPU {cpu:.1f} s over {wall:.1f} s", flush=True)
    for s in hog:
        s.close()
    check_probes(probes, "out of descriptors")
    if cpu > 0.8 * wall:
        fail(f"accept errors spun: {cpu:.1f} s CPU in {wall:.1f} s")
    if server.poll() is not None:
        fail("the server died")
finally:
    server.terminate()
    server.wait(timeout=20)

if failures:
    print("\nserve abuse test FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
    sys.exit(1)
print("serve abuse test passed")
