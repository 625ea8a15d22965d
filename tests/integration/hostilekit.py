"""hostilekit - raw-socket clients for the hostile-input tests.

The polite clients in pgtest (http.client, python3-websockets) refuse to send
what an attacker sends: binary or fragmented frames on demand, invalid UTF-8,
oversized headers, chunked bodies, heads that never end. These helpers speak
HTTP/1.1 and RFC 6455 by hand over blocking sockets, each with a timeout, so
a test can send exactly the bytes it means and see exactly what comes back.
"""

import base64
import json
import os
import re
import socket
import ssl
import struct
import time


def connect(port, timeout=5.0, tls=False):
    """A TCP (or TLS, certificate not checked) socket to 127.0.0.1:port."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.settimeout(timeout)
    return s


def recv_until_closed(s, limit=1 << 20, timeout=5.0):
    """Everything the peer sends until it closes (or timeout / limit):
    returns (bytes, closed) where closed is True if the peer closed."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    out = b""
    while len(out) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return out, False
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return out, False
        except (ConnectionResetError, BrokenPipeError):
            return out, True
        if not d:
            return out, True
        out += d
    return out, False


def read_http_response(s, timeout=5.0):
    """(status, headers dict lower-case, body bytes) of one HTTP response
    read from s, or (None, {}, raw) if the peer closed before a full head."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            return None, {}, buf
        try:
            d = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            return None, {}, buf
        if not d:
            return None, {}, buf
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if "content-length" in hdrs:
        n = int(hdrs["content-length"])
        while len(rest) < n and time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not d:
                break
            rest += d
        rest = rest[:n]
    elif "chunked" in hdrs.get("transfer-encoding", ""):
        body = b""
        while True:
            while b"\r\n" not in rest and time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                rest += d
            line, _, rest = rest.partition(b"\r\n")
            size = int(line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            while len(rest) < size + 2 and time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                rest += d
            body += rest[:size]
            rest = rest[size + 2:]
        rest = body
    return status, hdrs, rest


# --------------------------------------------------------------------------
# HTTP/1.1 answers in order on one connection (pipelining)

WAIT = 3.0   # seconds Wire waits for an answer or a close


class Answer:
    def __init__(self, version, status, reason, fields, body):
        self.version = version      # "HTTP/1.1"
        self.status = status
        self.reason = reason
        self.fields = fields        # [(lower-case name, value)] in order
        self.body = body

    def header(self, name):
        """The value of a field (its lines joined by ", "), or None."""
        vals = [v for k, v in self.fields if k == name.lower()]
        return ", ".join(vals) if vals else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.version} {self.status} {self.fields} {self.body[:200]!r}>"


class NoAnswer(AssertionError):
    pass


class Wire:
    """One client connection for exact request bytes and every answer that
    comes back on it, in order (pipelining, HEAD)."""

    def __init__(self, port, timeout=WAIT, tls=False):
        self.s = connect(port, timeout, tls)
        self.buf = b""
        self.eof = False

    def send(self, data):
        try:
            self.s.sendall(data)
        except OSError:
            pass    # closed while sending: what came back still tells

    def _more(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.eof:
            return False
        self.s.settimeout(left)
        try:
            d = self.s.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def answer(self, head_request=False, timeout=WAIT):
        """The next answer; NoAnswer if the node closes or stays silent
        before a whole one. head_request: the answer to a HEAD has no body
        (RFC 9112 §6.3 rule 1), whatever its Content-Length says."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._more(deadline):
                how = "closed the connection" if self.eof else \
                    f"sent nothing more within {timeout:g} s"
                raise NoAnswer(f"no answer: the node {how} (got {self.buf[:200]!r})")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        if not re.match(r"HTTP/\d\.\d \d{3}( |$)", lines[0]):
            raise AssertionError(f"not a status line: {lines[0][:120]!r} (the rest of "
                                 "an earlier answer's body?)")
        version, status, reason = (lines[0].split(" ", 2) + ["", ""])[:3]
        fields = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            fields.append((k.strip().lower(), v.strip()))
        ans = Answer(version, int(status), reason, fields, b"")
        if head_request or ans.status in (101, 204, 304) or ans.status < 200:
            return ans
        te, cl = ans.header("transfer-encoding"), ans.header("content-length")
        if te and "chunked" in te.lower():
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    if not self._more(deadline):
                        raise NoAnswer(f"chunked answer cut short: {body!r}")
                line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    if not self._more(deadline):
                        raise NoAnswer(f"chunked answer cut short: {body!r}")
                body, self.buf = body + self.buf[:size], self.buf[size + 2:]
                if size == 0:
                    break
        elif cl is not None:
            n = int(cl)
            while len(self.buf) < n:
                if not self._more(deadline):
                    raise NoAnswer(f"answer body cut short: {self.buf!r}")
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self._more(deadline):
                pass
            body, self.buf = self.buf, b""
        ans.body = body
        return ans

    def closed_within(self, timeout=WAIT):
        """True if the node closes the connection within timeout with no
        further byte sent (anything else fails: an answer nobody asked
        for is a desynchronised stream)."""
        deadline = time.monotonic() + timeout
        while self._more(deadline):
            pass
        assert self.buf == b"", f"the node sent more: {self.buf[:200]!r}"
        return self.eof

    def nothing_more(self, timeout=0.5):
        """No further byte arrives within timeout (the connection may stay)."""
        deadline = time.monotonic() + timeout
        while self._more(deadline):
            pass
        assert self.buf == b"", f"the node sent more: {self.buf[:200]!r}"

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_request(port, data, timeout=5.0, tls=False):
    """Send raw request bytes, return (status or None, headers, body)."""
    with connect(port, timeout, tls) as s:
        s.sendall(data)
        return read_http_response(s, timeout)


def request_bytes(method, path, port, headers=None, body=b""):
    """The bytes of one HTTP/1.1 request (Host and Content-Length filled)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    hdrs = dict(headers or {})
    if body and "Content-Length" not in hdrs and "Transfer-Encoding" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    for k, v in hdrs.items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body, size=1000):
    """body in chunked transfer encoding, size bytes a chunk."""
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def json_error(body):
    """The "error" member of a JSON error body (AssertionError otherwise)."""
    try:
        obj = json.loads(body)
    except ValueError:
        raise AssertionError(f"error body is not JSON: {body!r}")
    assert isinstance(obj, dict) and isinstance(obj.get("error"), str) and obj["error"], \
        f"error body has no error string: {body!r}"
    return obj["error"]


# --------------------------------------------------------------------------
# WebSocket by hand (RFC 6455)

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class RawWS:
    """A client WebSocket over a plain socket. frame() sends any frame the
    caller builds (opcode, FIN bit, payload, masked as a client must);
    recv() returns (opcode, payload) of the next whole frame from the
    server; close_code() waits for the server's close frame."""

    def __init__(self, sock, status, headers):
        self.s = sock
        self.status = status
        self.headers = headers
        self.buf = b""

    @classmethod
    def open(cls, port, path="/ws", headers=None, timeout=5.0, tls=False):
        s = connect(port, timeout, tls)
        key = base64.b64encode(os.urandom(16)).decode()
        h = {"Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
        h.update(headers or {})
        s.sendall(request_bytes("GET", path, port, h))
        # Read just the head: frames may follow it in the same segment.
        buf = b""
        s.settimeout(timeout)
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1]) if lines[0] else None
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        ws = cls(s, status, hdrs)
        ws.buf = rest
        return ws

    def frame(self, opcode, payload=b"", fin=True, rsv=0):
        self.s.sendall(client_frame(opcode, payload, fin, rsv))

    def send_text(self, text):
        self.frame(OP_TEXT, text)

    def send_json(self, obj):
        self.frame(OP_TEXT, json.dumps(obj))

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the server")
            self.s.settimeout(left)
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("server closed the TCP connection")
            self.buf += d

    def recv(self, timeout=5.0):
        """(opcode, payload bytes) of the next frame; raises TimeoutError
        or ConnectionError."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        self._need(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv_json(self, timeout=5.0):
        """The next text frame as JSON (skipping server pings)."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv(max(0.01, deadline - time.monotonic()))
            if op == OP_PING:
                continue
            assert op == OP_TEXT, f"expected a text frame, got opcode {op} {payload!r}"
            return json.loads(payload)

    def close_code(self, timeout=5.0):
        """Wait for the server's close frame: its status code (None if the
        frame had none); skips other frames. Raises if TCP closes first."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv(max(0.01, deadline - time.monotonic()))
            if op == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def client_frame(opcode, payload=b"", fin=True, rsv=0):
    """The bytes of one masked client frame."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    return hdr + mask + _mask_fast(payload, mask)


def _mask_fast(payload, mask):
    n = len(payload)
    if n == 0:
        return b""
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


# --------------------------------------------------------------------------
# Process facts


def rss_kb(pid):
    """Resident set size of a process in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def under_asan(pid):
    """True when the process runs with AddressSanitizer (its quarantine
    keeps freed memory resident, so RSS says little about leaks there)."""
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# --------------------------------------------------------------------------
# The garbage attacker, run as its own process so its work does not share a
# GIL with the client whose latency a test measures:
#   python3 hostilekit.py garbage PORT
# Opens a first wave of 300 hostile connections (random bytes, random bytes
# after a good WebSocket upgrade, truncated handshakes, 100 KB headers, and
# 60 half-open sockets that connect and never send) after printing
# "started", prints "ready", then
# repeats the short-lived kinds until its stdin closes; prints the number
# of connections made and exits, closing the half-open ones.


def _attack_one(port, kind, rnd):
    try:
        s = connect(port, timeout=2)
    except OSError:
        return None
    try:
        if kind == "random":
            s.sendall(rnd.randbytes(rnd.randint(1, 4096)))
        elif kind == "ws_garbage":
            ws = RawWS.open(port, timeout=2)
            s.close()
            s = ws.s
            if ws.status == 101:
                s.sendall(rnd.randbytes(rnd.randint(2, 2048)))
        elif kind == "truncated":
            full = request_bytes("GET", "/ws", port, {
                "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13"})
            s.sendall(full[:rnd.randint(1, len(full) - 2)])
        elif kind == "bighead":
            s.sendall(request_bytes("GET", "/sse", port, {"X-Big": "a" * 100 * 1024}))
        elif kind == "halfopen":
            return s
        try:
            s.settimeout(0.05)
            s.recv(1)  # give the node a moment to see the bytes before the close
        except OSError:
            pass
    except OSError:
        pass
    s.close()
    return None


def _garbage_main(port):
    import random
    import select
    import sys
    rnd = random.Random(1234)
    kinds = ["random"] * 80 + ["ws_garbage"] * 50 + ["truncated"] * 60 + \
        ["bighead"] * 50 + ["halfopen"] * 60
    rnd.shuffle(kinds)
    print("started", flush=True)
    held, made = [], 0
    for kind in kinds:
        s = _attack_one(port, kind, rnd)
        made += 1
        if s is not None:
            held.append(s)
    print("ready", flush=True)
    again = ["random", "ws_garbage", "truncated", "bighead"]
    while True:
        r, _, _ = select.select([sys.stdin], [], [], 0)
        if r and not sys.stdin.readline():
            break
        _attack_one(port, rnd.choice(again), rnd)
        made += 1
    for s in held:
        s.close()
    print(f"made {made}", flush=True)


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "garbage":
        _garbage_main(int(sys.argv[2]))
    else:
        sys.exit("usage: hostilekit.py garbage PORT")
