"""A local attacker for tests/daemon/test_abuse.py and bench/bench_abuse.py (stdlib only, run as nobody).

    python3 abuse_client.py MODE COUNT SOCKET [DAG_ID RUN_ID]

MODE is `pending` (connect and say nothing), `flood` (send 1 MiB without a newline), `viewers`
(hello, then pipeline 40 logs.read calls of 1 MiB and never read) or `name` (a hello with a
COUNT-kB client name full of control characters). Prints one JSON line of what it saw, holds its
connections until a line comes on stdin, closes them and prints "done".
"""
import json
import resource
import socket
import sys
import time

# The attacker may hold more sockets than a default soft limit of 1024 allows; the hard limit is its own.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(_hard, 65536) if _hard != resource.RLIM_INFINITY else 65536, _hard))

mode, count, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
socks, errors, refused, closed = [], 0, 0, 0

def connect():
    """A connection, waiting (up to 5 s) while flowd's listen backlog is full, as a patient attacker would."""
    deadline = time.monotonic() + 5
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            s.connect(path)
            return s
        except BlockingIOError:  # EAGAIN: the backlog is full for now
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.002)

def frame(s, wait):
    """The first line flowd sent (b"" if it closed, None if nothing came within `wait`)."""
    s.settimeout(wait)
    buf = b""
    try:
        while b"\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return buf or b""
            buf += chunk
    except (TimeoutError, BlockingIOError):
        return None
    except OSError:
        return b""
    return buf.split(b"\n")[0]

for _ in range(1 if mode == "name" else count):
    try:
        socks.append(connect())
    except OSError:
        errors += 1
        continue
    s = socks[-1]
    if mode == "flood":
        s.setblocking(False)
        blob = b"x" * (1 << 20)
        try:
            sent = 0
            while sent < len(blob):
                sent += s.send(blob[sent:])
        except OSError:
            pass
    elif mode == "viewers":
        s.sendall(b'{"hello": {"protocol": 1, "client": "pipeliner"}}\n')
        hello = frame(s, 5)
        if not hello or b'"hello"' not in hello:
            refused += 1
            continue
        req = {"id": 0, "method": "logs.read", "params": {"dag_id": sys.argv[4], "run_id": sys.argv[5],
               "task_id": "big", "offset": 0, "length": 1 << 20}}
        burst = b"".join((json.dumps({**req, "id": n}) + "\n").encode() for n in range(40))
        s.setblocking(False)
        try:
            s.send(burst)
        except OSError:
            pass
    elif mode == "name":
        name = "evil\n12:00:00 ERROR flow.flowd: forged line\x1b]2;pwned\x07" + "A" * (count * 1000)
        s.sendall((json.dumps({"hello": {"protocol": 1, "client": name}}) + "\n").encode())
        refused += b'"forbidden"' in (frame(s, 5) or b"")
        break
if mode == "pending":
    for s in socks:
        line = frame(s, 0.05)
        if line and b"too_many_connections" in line:
            refused += 1
        elif line == b"":
            closed += 1
print(json.dumps({"connected": len(socks), "errors": errors, "refused": refused, "closed": closed}), flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("done", flush=True)
