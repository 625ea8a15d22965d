"""faultkit - extra helpers for the fault, recovery, drain, cluster and churn
tests (issue 4). Built on pgtest; pgtest and conftest are not changed.

- `nodes` fixture: like gateway_factory, but every node still running at
  teardown is stopped with SIGTERM and must exit 0 (under ASan a leak makes
  LeakSanitizer exit non-zero: that fails the test, with the log attached).
- FixedPortGateway: a node that restarts on the port it had.
- RawWS: a blocking WebSocket client on a raw socket (handshake by hand), for
  clients that stall, never answer pings, or must not be helped by a library.
- StreamClient: an asyncio Protocol client for WS or SSE that records every
  delivery (id, channel, notices, close code) cheaply, for runs with hundreds
  of clients; reconnects are driven by the test.
- Publisher: a thread FCALLing at a steady rate, recording every id Redis
  returned and every call that failed.
"""

import asyncio
import base64
import json
import os
import re
import signal
import socket
import struct
import threading
import time

import pytest
import redis as redis_py

import hostilekit
import pgtest
from pgtest import wait_until


# --------------------------------------------------------------------------
# Nodes whose exit code is checked


class FixedPortGateway(pgtest.Gateway):
    """A Gateway that keeps its port across stop()/start() (a restart "on the
    same port"), picking a free one only the first time."""

    def start(self):
        if self.port is None:
            return super().start()
        self.spawn("restart")
        try:
            wait_until(lambda: self.proc.poll() is not None or
                       (self.readyz() == 200 if self.wait_ready
                        else pgtest.port_listening(self.port)),
                       timeout=10, msg=f"{self.name} back on port {self.port}")
        except AssertionError:
            pgtest.stop_process(self.proc, signal.SIGKILL)
            raise pgtest.GatewayStartError(
                f"{self.name} did not come back:\n{pgtest.tail(self.logfile)}")
        if self.proc.poll() is not None:
            raise pgtest.GatewayStartError(
                f"{self.name} exited with {self.proc.returncode} on restart:\n"
                f"{pgtest.tail(self.logfile)}")
        return self


@pytest.fixture
def nodes(redis_server, tmp_path):
    """make(args=(), name=None, start=True, ready=True) -> FixedPortGateway.
    Teardown stops each node still running with SIGTERM; any exit code other
    than 0 (a crash, a sanitizer report, a hang past 15 s) fails the test."""
    made = []

    def make(args=(), name=None, start=True, ready=True, env=None):
        gw = FixedPortGateway(redis_server, tmp_path / "gw", args=args, env=env,
                              name=name or f"gw{len(made) + 1}", ready=ready)
        made.append(gw)
        if start:
            gw.start()
        return gw

    yield make
    bad = []
    for gw in made:
        if gw.proc is not None and gw.proc.poll() is None:
            rc = gw.stop(signal.SIGTERM, timeout=15)
            if rc != 0:
                bad.append(f"{gw.name}: exit {rc}\n{pgtest.tail(gw.logfile, 60)}")
        if gw in pgtest.ACTIVE:
            pgtest.ACTIVE.remove(gw)
    assert not bad, "node(s) did not exit 0 after SIGTERM:\n" + "\n".join(bad)


def stop_ok(gw, timeout=15):
    """SIGTERM by PID; the node must exit 0 (LeakSanitizer exits non-zero)."""
    rc = gw.stop(signal.SIGTERM, timeout=timeout)
    assert rc == 0, f"{gw.name} exited {rc} after SIGTERM:\n{pgtest.tail(gw.logfile, 80)}"
    return rc


def metric(gw, name, labels=None, default=0.0):
    v = pgtest.metric_value(gw.metrics(), name, labels)
    return default if v is None else v


def connections(gw):
    text = gw.metrics()
    return sum(pgtest.metric_value(text, "pushgate_connections", {"transport": t}) or 0
               for t in ("ws", "sse"))


def fcall(rds, channel, payload, fn="pushgate_publish"):
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    return rds.execute_command("FCALL", fn, 0, channel, payload)


# --------------------------------------------------------------------------
# Blocking raw-socket WebSocket client


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_handshake_bytes(port, query=""):
    path = "/ws" + (f"?{query}" if query else "")
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {ws_key()}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def sse_request_bytes(port, query="", last_event_id=None):
    path = "/sse" + (f"?{query}" if query else "")
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Accept: text/event-stream\r\n{extra}\r\n").encode()


def ws_frame(opcode, payload=b"", fin=True):
    """A masked client frame (hostilekit's builder, without RSV bits)."""
    return hostilekit.client_frame(opcode, payload, fin)


def parse_frames(buf):
    """Split server (unmasked) frames off buf: ([(opcode, payload)], rest).
    Walks with an offset and slices the rest once (buffers hold hundreds of
    frames when the node coalesces a burst into one write)."""
    out = []
    pos, end = 0, len(buf)
    while True:
        if end - pos < 2:
            break
        b0, b1 = buf[pos], buf[pos + 1]
        n = b1 & 0x7F
        off = pos + 2
        if n == 126:
            if end - pos < 4:
                break
            n = (buf[pos + 2] << 8) | buf[pos + 3]
            off = pos + 4
        elif n == 127:
            if end - pos < 10:
                break
            n = struct.unpack_from("!Q", buf, pos + 2)[0]
            off = pos + 10
        if b1 & 0x80:
            off += 4  # a server must not mask, but do not choke on it
        if end < off + n:
            break
        out.append((b0 & 0x0F, bytes(buf[off:off + n])))
        pos = off + n
    return out, buf[pos:]


class RawWS:
    """A WebSocket client on a plain blocking socket. rcvbuf (set before
    connect) keeps the kernel from absorbing much for a client that stalls."""

    def __init__(self, port, query="", rcvbuf=None, timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(ws_handshake_bytes(port, query))
        head = b""
        while b"\r\n\r\n" not in head:
            d = self.sock.recv(4096)
            if not d:
                break
            head += d
        head, _, self.buf = head.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1]) if head else None
        self.eof = False

    def frames(self, timeout=5.0, until=None):
        """Read frames until `until(opcode, payload)` is true, EOF or timeout;
        returns the list of (opcode, payload) read (EOF sets self.eof)."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            fr, self.buf = parse_frames(self.buf)
            for f in fr:
                got.append(f)
                if until is not None and until(*f):
                    return got
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return got
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return got
            except ConnectionResetError:
                d = b""
            if not d:
                self.eof = True
            self.buf += d

    def send(self, opcode, payload=b""):
        self.sock.sendall(ws_frame(opcode, payload))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def close_code(payload):
    """(code, reason) of a close frame's payload."""
    if len(payload) < 2:
        return None, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


# --------------------------------------------------------------------------
# asyncio Protocol client for many connections


ID_RE = re.compile(rb'"id":"(\d+)"')


class StreamClient(asyncio.Protocol):
    """One WS or SSE connection that records deliveries.

    .ids: ids of delivered messages (int) in arrival order, .msgs: the
    delivered JSON objects when keep=True, .notices: recovery notices
    (WS {"type":"recovery"...} / SSE event pushgate.recovery), .controls:
    other WS control objects, .close: (code, reason) of a WS close frame,
    .retry: SSE retry hints, .pings: WS pings or SSE ': ping' comments seen,
    .done: a future set when the connection is gone."""

    def __init__(self, kind, keep=False):
        self.kind = kind
        self.keep = keep
        self.ids = []
        self.msgs = []
        self.order = []      # ids and "recovery" notices, in arrival order
        self.notices = []
        self.controls = []
        self.retry = []
        self.pings = 0
        self.close = None
        self.status = None
        self.head = b""
        self.buf = b""
        self.transport = None
        self.done = asyncio.get_event_loop().create_future()
        self.headers_done = asyncio.get_event_loop().create_future()
        self.last_event_id = None

    # -- asyncio.Protocol
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.status is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, rest = self.head.partition(b"\r\n\r\n")
            self.status = int(head.split(b" ", 2)[1])
            self.head = head
            if not self.headers_done.done():
                self.headers_done.set_result(self.status)
            data = rest
            if self.status not in (101, 200):
                return
        self.buf += data
        if self.kind == "ws":
            self._ws()
        else:
            self._sse()

    def connection_lost(self, exc):
        if not self.headers_done.done():
            self.headers_done.set_result(None)
        if not self.done.done():
            self.done.set_result(True)

    # -- parsing
    def _deliver(self, raw):
        if raw.startswith(b'{"type"'):
            obj = json.loads(raw)
            if obj.get("type") == "recovery":
                self.notices.append(obj)
                self.order.append("recovery")
            else:
                self.controls.append(obj)
            return
        if self.keep:
            obj = json.loads(raw)
            self.msgs.append(obj)
            self.ids.append(int(obj["id"]) if "id" in obj else None)
            self.order.append(self.ids[-1])
            return
        m = ID_RE.search(raw)
        self.ids.append(int(m.group(1)) if m else None)
        self.order.append(self.ids[-1])

    def _ws(self):
        frames, self.buf = parse_frames(self.buf)
        for op, payload in frames:
            if op == 1:
                self._deliver(payload)
            elif op == 9:
                self.pings += 1
                self.transport.write(ws_frame(10, payload))
            elif op == 8:
                self.close = close_code(payload)
                try:
                    self.transport.write(ws_frame(8, payload[:2]))
                except Exception:
                    pass
                self.transport.close()

    def _sse(self):
        pos = 0
        while True:
            i = self.buf.find(b"\n\n", pos)
            if i < 0:
                self.buf = self.buf[pos:]
                return
            block, pos = self.buf[pos:i], i + 2
            event, data = None, []
            for line in block.split(b"\n"):
                if line.startswith(b":"):
                    if line[1:].strip() == b"ping":
                        self.pings += 1
                elif line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"id:"):
                    self.last_event_id = line[3:].strip().decode()
                elif line.startswith(b"retry:"):
                    self.retry.append(int(line[6:].strip()))
            if not data:
                continue
            raw = b"\n".join(data)
            if event == "pushgate.recovery":
                self.notices.append(json.loads(raw))
                self.order.append("recovery")
            else:
                self._deliver(raw)

    # -- use
    def send_json(self, obj):
        self.transport.write(ws_frame(1, json.dumps(obj)))

    def abort(self):
        if self.transport is not None:
            self.transport.abort()

    @property
    def last_id(self):
        for i in reversed(self.ids):
            if i is not None:
                return i
        return None


async def open_stream(port, kind, query="", last_event_id=None, keep=False, timeout=5.0):
    """Connect a StreamClient; returns it once the status line is in (the
    caller checks .status: 101 for WS, 200 for SSE)."""
    loop = asyncio.get_running_loop()
    _, c = await asyncio.wait_for(loop.create_connection(
        lambda: StreamClient(kind, keep), "127.0.0.1", port), timeout)
    req = (ws_handshake_bytes(port, query) if kind == "ws"
           else sse_request_bytes(port, query, last_event_id))
    c.transport.write(req)
    await asyncio.wait_for(asyncio.shield(c.headers_done), timeout)
    return c


# --------------------------------------------------------------------------
# Steady FCALL publisher


class Publisher(threading.Thread):
    """FCALLs `rate` messages a second to `channel` until stop(). Every id
    Redis returned goes to .ids (in call order, which is id order); every
    failed call to .failures as (time, repr(error)). A failed call is not
    retried: a new message is sent at the next tick."""

    def __init__(self, redis_server, channel, rate=100, fn="pushgate_publish"):
        super().__init__(daemon=True)
        self.port = redis_server.port
        self.channel = channel
        self.rate = rate
        self.fn = fn
        self.ids = []
        self.failures = []
        self.seq = 0
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def _client(self):
        return redis_py.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                              socket_timeout=2, socket_connect_timeout=1)

    def run(self):
        r = self._client()
        period = 1.0 / self.rate
        nxt = time.monotonic()
        while not self._halt.is_set():
            self.seq += 1
            try:
                rid = r.execute_command("FCALL", self.fn, 0, self.channel,
                                        json.dumps({"event": "tick",
                                                    "data": {"n": self.seq}}))
                with self.lock:
                    self.ids.append(int(rid))
            except redis_py.exceptions.RedisError as e:
                with self.lock:
                    self.failures.append((time.monotonic(), repr(e)))
                try:
                    r.close()
                except Exception:
                    pass
                r = self._client()
            nxt += period
            delay = nxt - time.monotonic()
            if delay > 0:
                self._halt.wait(delay)
            else:
                nxt = time.monotonic()
        r.close()

    def snapshot(self):
        with self.lock:
            return list(self.ids)

    def stop(self):
        self._halt.set()
        self.join(10)
        assert not self.is_alive(), "publisher thread did not stop"


def check_exact(got, expected, who):
    """got must equal expected: every id once, in order. The message names
    the first divergence (gap, duplicate or reordering)."""
    if got == expected:
        return
    dups = sorted({i for i in got if got.count(i) > 1}) if len(got) < 20000 else "?"
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    first = next((k for k, (a, b) in enumerate(zip(got, expected)) if a != b),
                 min(len(got), len(expected)))
    raise AssertionError(
        f"{who}: got {len(got)} ids, expected {len(expected)}; first divergence at "
        f"#{first}: got {got[first:first + 3]} expected {expected[first:first + 3]}; "
        f"missing {missing[:10]} ({len(missing)}), extra {extra[:10]} ({len(extra)}), "
        f"duplicates {dups if isinstance(dups, str) else dups[:10]}")


# --------------------------------------------------------------------------
# A proxy between a node and Redis that can hold the subscriber's replies


# a (P)SUBSCRIBE command: its name as a whole RESP bulk string
SUBSCRIBE_RE = re.compile(rb"\$1?\d\r\nP?SUBSCRIBE\r\n", re.I)


class SubscriberTap(threading.Thread):
    """A TCP proxy on 127.0.0.1:<free port> in front of a RedisServer.

    Bytes pass both ways untouched, except that while hold() is on, what
    Redis sends the node's subscriber connection (the one whose commands
    include SUBSCRIBE) is kept back until release(). Redis meanwhile acts on
    the node's (UN)SUBSCRIBEs at once: the node just learns of it late, as
    over a slow link. .sent(word) tells whether the subscriber connection
    has sent a command containing that word since the last clear()."""

    def __init__(self, redis_server):
        super().__init__(daemon=True)
        self.target = ("127.0.0.1", redis_server.port)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._lock = threading.Lock()
        self._held = None          # list of (sock, bytes) while holding
        self._sub_sent = b""
        self._socks = []
        self._halt = False

    def run(self):
        while not self._halt:
            try:
                client, _ = self.lsock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._socks += [client, upstream]
            state = {"sub": False}
            threading.Thread(target=self._pump, args=(client, upstream, state, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, False),
                             daemon=True).start()

    def _pump(self, src, dst, state, from_node):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            with self._lock:
                if from_node:
                    if SUBSCRIBE_RE.search(data):
                        state["sub"] = True
                    if state["sub"]:
                        self._sub_sent += data.upper()
                elif state["sub"] and self._held is not None:
                    self._held.append((dst, data))
                    continue
            try:
                dst.sendall(data)
            except OSError:
                pass

    def hold(self):
        with self._lock:
            self._held = []

    def release(self):
        with self._lock:
            held, self._held = self._held or [], None
            for dst, data in held:
                try:
                    dst.sendall(data)
                except OSError:
                    pass

    def sent(self, word):
        with self._lock:
            return word.upper() in self._sub_sent

    def clear(self):
        with self._lock:
            self._sub_sent = b""

    def close(self):
        self._halt = True
        self.release()
        for s in [self.lsock] + self._socks:
            try:
                s.close()
            except OSError:
                pass
