"""pgtest - helpers for pushgate's integration tests.

A real redis-server and the real pushgate binary, each on a free loopback
port picked at run time and stopped by PID; WebSocket (python3-websockets
10.4, asyncio API) and SSE (raw socket) clients; JWT minting; polling with a
deadline instead of sleeping. Imported by conftest.py and the test files.
"""

import asyncio
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis as redis_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FUNCTIONS_LUA = REPO / "gateway" / "functions.lua"
DEFAULT_PREFIX = "pushgate:"
API_KEY = "testkey"

# Gateways and Redis servers alive in the current test; conftest attaches
# their logs to a failing test's report.
ACTIVE = []


def pushgate_bin():
    """Path of the pushgate binary: $PUSHGATE_BIN or the lead's build dir."""
    env = os.environ.get("PUSHGATE_BIN")
    if env:
        return env
    return str(REPO / "build" / "gateway" / "pushgate")


# --------------------------------------------------------------------------
# Small generic helpers


def free_port():
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=5.0, interval=0.02, msg="condition"):
    """Poll pred() until it returns something truthy; return that value.
    Raises AssertionError naming msg when the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # the condition may raise until it holds
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {msg}{extra}")
        time.sleep(interval)


async def async_wait_until(pred, timeout=5.0, interval=0.02, msg="condition"):
    """wait_until for coroutines: pred may be a plain or an async callable."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if asyncio.iscoroutine(v):
                v = await v
            if v:
                return v
        except Exception as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {msg}{extra}")
        await asyncio.sleep(interval)


def run(coro, timeout=60):
    """Run one coroutine to completion with a whole-test deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def fn_name(prefix):
    """The Redis function-name stem for a key prefix (SPEC §3)."""
    return re.sub(r"[^A-Za-z0-9]", "_", prefix)


def render_functions(prefix=DEFAULT_PREFIX, history_size=100, history_ttl=300,
                     max_bytes=65536, revoke_ttl=86400):
    """gateway/functions.lua with its placeholders replaced as plain text,
    exactly as the gateway does before FUNCTION LOAD REPLACE."""
    text = FUNCTIONS_LUA.read_text()
    for k, v in (("@PREFIX@", prefix), ("@FN@", fn_name(prefix)),
                 ("@HISTORY_SIZE@", str(history_size)),
                 ("@HISTORY_TTL@", str(history_ttl)),
                 ("@MAX_BYTES@", str(max_bytes)),
                 ("@REVOKE_TTL@", str(revoke_ttl))):
        text = text.replace(k, v)
    return text


def tail(path, lines=150):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


def proc_cpu_seconds(pid):
    """utime+stime of a process, in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # comm may contain spaces: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def child_pids(pid):
    """PIDs of the children of process pid right now (every thread's
    /proc/<pid>/task/<tid>/children), sorted; [] when pid is gone."""
    out = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return sorted(out)


def proc_start_time(pid):
    """Start time of process pid (clock ticks since boot, /proc/<pid>/stat
    field 22), or None when there is no such process or it is a zombie.
    (pid, start time) names one process even if the pid is reused later."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def proc_alive(pid, start_time=None):
    """True while process pid runs (not a zombie) and, when start_time is
    given, is still the process that started then."""
    st = proc_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def tcp_connection_owners(pids, server_port):
    """{peer port: pid} for every established IPv4 TCP connection to
    127.0.0.1:server_port whose server end is a descriptor of one of pids
    (read from /proc/net/tcp and /proc/<pid>/fd): which of several processes
    sharing a port accepted each client."""
    want = f":{server_port:04X}"
    inodes = {}
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fl = line.split()
            # fl[1] local, fl[2] remote, fl[3] state (01 established), fl[9] inode
            if fl[1].endswith(want) and fl[3] == "01" and fl[9] != "0":
                inodes[fl[9]] = int(fl[2].rsplit(":", 1)[1], 16)
    out = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                out[inodes[link[8:-1]]] = pid
    return out


def port_listening(port):
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    """Send sig to proc (a Popen) by PID, wait up to timeout, then SIGKILL.
    Returns the exit code (negative signal number if killed by a signal)."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
    return proc.returncode


# --------------------------------------------------------------------------
# redis-server


class RedisProcess:
    """What every redis-server the tests start shares: .proc (a Popen) and
    .client(); subclasses start it their way."""

    def _ping_or_dead(self):
        if self.proc.poll() is not None:
            return True
        try:
            return self.client().ping()
        except redis_py.exceptions.RedisError:
            return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=10)

    def kill9(self):
        """Crash it: SIGKILL by PID and wait until it is gone."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class RedisServer(RedisProcess):
    """A private redis-server on 127.0.0.1:<free port>, no persistence, its
    own temp dir and pidfile. stop() kills it by PID; kill9() and start()
    simulate a crash and restart on the same port (data is lost)."""

    def __init__(self, tmpdir=None):
        self.dir = Path(tmpdir or tempfile.mkdtemp(prefix="pg-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = None
        self.proc = None
        self.pidfile = self.dir / "redis.pid"
        self.logfile = self.dir / "redis.log"
        self.name = "redis"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, port=None):
        """Start (or restart, same port when port is None and it ran
        before) and wait until PING answers."""
        keep_port = port or self.port
        for attempt in range(5):
            self.port = keep_port or free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                 "--pidfile", str(self.pidfile), "--logfile", str(self.logfile),
                 "--daemonize", "no", "--protected-mode", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=str(self.dir))
            try:
                wait_until(self._ping_or_dead, timeout=10, msg="redis PING")
            except AssertionError:
                stop_process(self.proc, signal.SIGKILL)
                raise
            if self.proc.poll() is None:
                return self
            # It died: most likely the port was taken between free_port()
            # and bind. Pick another unless the port is fixed.
            if keep_port and attempt >= 2:
                break
        raise RuntimeError(f"redis-server did not start:\n{tail(self.logfile)}")

    def client(self, decode=True):
        return redis_py.Redis(host="127.0.0.1", port=self.port,
                              decode_responses=decode, socket_timeout=5)

    def restart_hard(self):
        """kill -9 then start again on the same port, empty."""
        self.kill9()
        return self.start(self.port)


@contextlib.contextmanager
def running_redis(tmpdir):
    """A RedisServer started in tmpdir for the with-block, listed in ACTIVE
    (its log goes with a failure's report) and stopped by PID after it."""
    srv = RedisServer(tmpdir)
    ACTIVE.append(srv)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if srv in ACTIVE:
            ACTIVE.remove(srv)


# --------------------------------------------------------------------------
# HTTP


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # dict, lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:300]!r}>"


def http_request(port, method, path, headers=None, body=None, timeout=5.0):
    """One HTTP/1.1 request to 127.0.0.1:port; returns a Response."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        return Response(r.status, r.reason, hdrs, data)
    finally:
        conn.close()


def api_request(port, path, body, api_key=API_KEY, method="POST", timeout=5.0):
    """One /api/* request with the API key (None: no Authorization header);
    body: dict/list (sent as JSON), str or bytes (sent as is) or None."""
    hdrs = {"Content-Type": "application/json"}
    if api_key is not None:
        hdrs["Authorization"] = f"Bearer {api_key}"
    return http_request(port, method, path, hdrs, body, timeout)


def api_publish(port, body, api_key=API_KEY, timeout=5.0):
    """POST /api/publish with the API key; returns the Response."""
    return api_request(port, "/api/publish", body, api_key, "POST", timeout)


# --------------------------------------------------------------------------
# The gateway


class GatewayStartError(AssertionError):
    pass


class Gateway:
    """One pushgate process on 127.0.0.1:<free port>, pointed at a
    RedisServer. Output goes to a log file attached to failing tests."""

    def __init__(self, redis, tmpdir, args=(), env=None, name="gw",
                 ready=True, redis_url=None):
        self.redis = redis
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.name = name
        self.wait_ready = ready
        self.redis_url = redis_url
        self.port = None
        self.proc = None
        self.logfile = self.dir / f"{name}.log"
        self.prefix = DEFAULT_PREFIX
        if "--prefix" in self.args:
            self.prefix = self.args[self.args.index("--prefix") + 1]
        self.api_key = API_KEY
        if "--api-key" in self.args:
            self.api_key = self.args[self.args.index("--api-key") + 1]
        ACTIVE.append(self)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def fn(self):
        return fn_name(self.prefix)

    def url(self, scheme, path):
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def ws_url(self, query=""):
        return self.url("ws", "/ws" + (f"?{query}" if query else ""))

    def spawn(self, what):
        """Run command() on self.port, output appended to the log after a
        '### <what>' line; the environment has no PUSHGATE_* of the test
        run's own, only extra_env."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PUSHGATE_")}
        env.update(self.extra_env)
        with open(self.logfile, "ab") as log:
            log.write(f"### {what} {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         env=env, cwd=str(self.dir))

    def command(self):
        url = self.redis_url or (self.redis.url if self.redis else
                                 "redis://127.0.0.1:1/0")
        return [pushgate_bin(), "--listen", f"127.0.0.1:{self.port}",
                "--redis-url", url, "--log-level", "debug"] + self.args

    def start(self):
        binary = pushgate_bin()
        if not os.access(binary, os.X_OK):
            raise GatewayStartError(f"pushgate binary not found at {binary} "
                                    "(set PUSHGATE_BIN)")
        for attempt in range(3):
            self.port = free_port()
            self.spawn("start")
            # Ours, not whoever else took the port between free_port() and
            # our bind (four tests at a time): another test's node answered
            # /readyz while this one was failing with "Address already in
            # use", and the test then talked to the wrong node.
            if not self.wait_ready:
                wait_until(lambda: self.proc.poll() is not None or
                           (self.bound() and port_listening(self.port)), timeout=10,
                           msg=f"{self.name} listening")
                if self.proc.poll() is None:
                    return self
            else:
                try:
                    wait_until(lambda: self.proc.poll() is not None or
                               (self.bound() and self.readyz() == 200), timeout=10,
                               msg=f"{self.name} /readyz 200")
                except AssertionError:
                    stop_process(self.proc, signal.SIGKILL)
                    raise GatewayStartError(
                        f"{self.name} not ready in 10 s:\n{tail(self.logfile)}")
                if self.proc.poll() is None:
                    return self
            log_text = tail(self.logfile, 40)
            if "in use" not in log_text.lower():
                break  # not a port race: report it
        raise GatewayStartError(f"{self.name} exited with {self.proc.returncode} "
                                f"at start:\n{tail(self.logfile)}")

    def bound(self):
        """Its log says it listens on its port (it logs that once bound)."""
        return f"listening on 127.0.0.1:{self.port}" in tail(self.logfile, 200)

    def readyz(self):
        try:
            return http_request(self.port, "GET", "/readyz", timeout=1).status
        except OSError:
            return None

    def get(self, path, headers=None, timeout=5.0):
        return http_request(self.port, "GET", path, headers, timeout=timeout)

    def publish(self, body, api_key=None, timeout=5.0):
        return api_publish(self.port, body, self.api_key if api_key is None
                           else api_key, timeout)

    def api(self, path, body, api_key=None, method="POST", timeout=5.0):
        """/api/<path> with this node's API key unless api_key is given."""
        return api_request(self.port, path, body, self.api_key if api_key is None
                           else api_key, method, timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Signal by PID, wait up to timeout, SIGKILL as a fallback.
        Returns the exit code."""
        if self.proc is None:
            return None
        return stop_process(self.proc, sig, timeout)

    def log(self):
        return tail(self.logfile, 100000)

    def metrics(self):
        return self.get("/metrics").body.decode()


def stop_gateways(made, timeout=10):
    """Stop every Gateway of made by PID (SIGTERM, SIGKILL past timeout) and
    forget it; the ones that were running and did not exit 0, each with the
    tail of its log (a fixture asserts there are none: no crash or leak at
    a drain, ASan included)."""
    bad = []
    for gw in made:
        running = gw.alive()
        rc = gw.stop(timeout=timeout)
        if running and rc != 0:
            bad.append(f"{gw.name}: exit {rc}\n{tail(gw.logfile, 60)}")
        if gw in ACTIVE:
            ACTIVE.remove(gw)
    return bad


def metric_value(text, name, labels=None):
    """The value of one Prometheus sample, or None. labels: dict to match
    (every given label must be present with that value)."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if labels and any(got.get(k) != v for k, v in labels.items()):
            continue
        return float(m.group(3))
    return None


def metric_samples(text, name=None):
    """Every Prometheus sample of text (of family `name` only, when given)
    as (name, labels dict, value), in order."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or (name is not None and m.group(1) != name):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def run_pushgate(args, env=None, timeout=10):
    """Run pushgate to completion (for --help, bad options): returns the
    CompletedProcess with text stdout/stderr."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}
    full_env.update(env or {})
    return subprocess.run([pushgate_bin()] + list(args), env=full_env,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


# --------------------------------------------------------------------------
# WebSocket client (python3-websockets 10.4, asyncio API)


class WSClient:
    """Thin wrapper over a websockets client connection: JSON in and out,
    every receive with a timeout."""

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def connect(cls, url, headers=None, timeout=5.0, **kw):
        import websockets
        ws = await asyncio.wait_for(
            websockets.connect(url, extra_headers=headers or {}, max_size=None,
                               open_timeout=timeout, ping_interval=None,
                               close_timeout=2, **kw),
            timeout + 1)
        return cls(ws)

    async def recv(self, timeout=5.0):
        return await asyncio.wait_for(self.ws.recv(), timeout)

    async def recv_json(self, timeout=5.0):
        raw = await self.recv(timeout)
        assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
        return json.loads(raw)

    async def recv_until(self, pred, timeout=5.0):
        """Receive JSON messages until pred(msg); return (msg, skipped)."""
        deadline = time.monotonic() + timeout
        skipped = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message; got {skipped}")
            msg = await self.recv_json(left)
            if pred(msg):
                return msg, skipped
            skipped.append(msg)

    async def send_json(self, obj):
        await self.ws.send(json.dumps(obj))

    async def send(self, data):
        await self.ws.send(data)

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except Exception:
            pass

    async def wait_closed(self, timeout=5.0):
        """Until the server has closed the connection: (code, reason)."""
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code, self.ws.close_reason

    @property
    def close_code(self):
        return self.ws.close_code

    @property
    def close_reason(self):
        return self.ws.close_reason

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


async def ws_connect(gw, query="", headers=None, timeout=5.0):
    return await WSClient.connect(gw.ws_url(query), headers, timeout)


async def ws_handshake_status(gw, query="", headers=None):
    """Try a WebSocket handshake; return 101 on success (and close) or the
    HTTP status the server refused it with."""
    import websockets
    try:
        c = await WSClient.connect(gw.ws_url(query), headers)
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code
    await c.close()
    return 101


# --------------------------------------------------------------------------
# SSE client (raw socket, asyncio streams)


class SSEClient:
    """An EventSource over a raw socket: sends the GET itself, parses the
    status line and headers, de-chunks the body if needed, and parses
    events (id/event/data/retry lines; ':' comments kept in .comments)."""

    def __init__(self):
        self.reader = None
        self.writer = None
        self.status = None
        self.reason = None
        self.headers = {}
        self.comments = []
        self.last_id = None
        self._chunked = False
        self._chunk_left = 0
        self._buf = b""
        self._eof = False

    @classmethod
    async def connect(cls, port, path="/sse", headers=None, timeout=5.0,
                      last_event_id=None):
        self = cls()
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
                 "Accept: text/event-stream", "Cache-Control: no-cache"]
        if last_event_id is not None:
            lines.append(f"Last-Event-ID: {last_event_id}")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        head_lines = head.decode("latin-1").split("\r\n")
        parts = head_lines[0].split(" ", 2)
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        for line in head_lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        return self

    async def _read_body(self, timeout):
        """Some more body bytes (de-chunked); b'' at end of stream."""
        if self._eof:
            return b""
        if not self._chunked:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                self._eof = True
            return data
        if self._chunk_left == 0:
            line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self._eof = True
                return b""
            self._chunk_left = size
        data = await asyncio.wait_for(
            self.reader.read(min(self._chunk_left, 65536)), timeout)
        if not data:
            self._eof = True
            return b""
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            await asyncio.wait_for(self.reader.readexactly(2), timeout)
        return data

    async def read_all(self, timeout=5.0):
        """The rest of the body until the server closes (error answers)."""
        out = self._buf
        self._buf = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if "content-length" in self.headers and not self._chunked and \
                    len(out) >= int(self.headers["content-length"]):
                break
            try:
                data = await self._read_body(left)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError):
                break
            if not data:
                break
            out += data
        return out

    async def _line(self, deadline):
        while True:
            m = re.search(rb"\r\n|\n|\r(?=[^\n])", self._buf)
            if m:
                line = self._buf[:m.start()]
                self._buf = self._buf[m.end():]
                return line.decode("utf-8")
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            data = await self._read_body(left)
            if not data:
                return None
            self._buf += data

    async def next_event(self, timeout=5.0):
        """The next event as a dict with any of id/event/data/retry, or None
        at end of stream. Raises asyncio.TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        ev, data = {}, []
        while True:
            line = await self._line(deadline)
            if line is None:
                return None
            if line == "":
                if data:
                    ev["data"] = "\n".join(data)
                if ev:
                    return ev
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].lstrip(" "))
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "id":
                ev["id"] = value
                self.last_id = value
            elif field in ("event", "retry"):
                ev[field] = value

    async def next_data_event(self, timeout=5.0):
        """Skip retry-only events; return the next event with data."""
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next_event(max(0.01, deadline - time.monotonic()))
            if ev is None or "data" in ev:
                return ev

    async def next_json(self, timeout=5.0):
        """(event dict, parsed data) of the next data event."""
        ev = await self.next_data_event(timeout)
        assert ev is not None, "SSE stream ended"
        return ev, json.loads(ev["data"])

    async def events_until_end(self, timeout=5.0):
        """Every event until the server ends the stream; raises
        asyncio.TimeoutError if it has not ended within timeout."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            ev = await self.next_event(max(0.01, deadline - time.monotonic()))
            if ev is None:
                return out
            out.append(ev)

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 2)
            except Exception:
                pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


async def sse_connect(gw, query="", headers=None, last_event_id=None, timeout=5.0):
    path = "/sse" + (f"?{query}" if query else "")
    return await SSEClient.connect(gw.port, path, headers, timeout, last_event_id)


# --------------------------------------------------------------------------
# JWT minting


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(claims, exp_in):
    c = dict(claims)
    if exp_in is not None and "exp" not in c:
        c["exp"] = int(time.time()) + exp_in
    return c


def _signing_input(alg, claims, kid=None):
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    return (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
            b64url(json.dumps(claims, separators=(",", ":")).encode()))


def mint_hs256(secret, claims, exp_in=3600, kid=None):
    """An HS256 token for claims (exp added unless given or exp_in=None;
    a "kid" header when kid is given; the same for the RS/ES mints)."""
    if isinstance(secret, str):
        secret = secret.encode()
    si = _signing_input("HS256", _claims(claims, exp_in), kid)
    sig = hmac.new(secret, si.encode(), hashlib.sha256).digest()
    return si + "." + b64url(sig)


def gen_rsa_key(tmpdir, name="rsa_pub.pem"):
    """(private key object, path of the PEM public key file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = Path(tmpdir) / name
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, str(path)


def gen_ec_key(tmpdir, name="ec_pub.pem"):
    """(P-256 private key object, path of the PEM public key file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    path = Path(tmpdir) / name
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, str(path)


def mint_rs256(private_key, claims, exp_in=3600, kid=None):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    si = _signing_input("RS256", _claims(claims, exp_in), kid)
    sig = private_key.sign(si.encode(), padding.PKCS1v15(), hashes.SHA256())
    return si + "." + b64url(sig)


def mint_es256(private_key, claims, exp_in=3600, kid=None):
    """ES256: the JWS signature is raw R||S (32 bytes each), not DER."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    si = _signing_input("ES256", _claims(claims, exp_in), kid)
    der = private_key.sign(si.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return si + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def jwk(private_key, kid=None):
    """The public JWK (RFC 7517/7518) of an RSA or P-256 private key, as a
    dict for a JWKS document {"keys": [...]}; "kid" when given."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    pub = private_key.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        def uint(v):
            return b64url(v.to_bytes((v.bit_length() + 7) // 8, "big"))
        out = {"kty": "RSA", "alg": "RS256", "use": "sig",
               "n": uint(nums.n), "e": uint(nums.e)}
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        nums = pub.public_numbers()
        out = {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
               "x": b64url(nums.x.to_bytes(32, "big")),
               "y": b64url(nums.y.to_bytes(32, "big"))}
    else:
        raise TypeError(f"no JWK for {type(pub).__name__}")
    if kid is not None:
        out["kid"] = kid
    return out
