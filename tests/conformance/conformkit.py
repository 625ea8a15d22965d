"""conformkit - what every conformance case needs (issue 14).

Built on the integration suite's helpers, which are imported, not copied:
pgfixtures (a private redis-server and real pushgate nodes, stopped by PID)
and hostilekit (raw sockets, masked client frames, RawWS). Added here:

- the `node` fixture: one node per case, and after the case, whatever it
  did, a check that the node still serves a fresh client (a WebSocket
  connect and one message published through the API and delivered to it);
- Peer: hostilekit.RawWS that checks every server frame against RFC 6455
  §5 (unmasked, no RSV bit, known opcode, control frames whole and at most
  125 bytes, a Close payload of 0 or 2+ bytes with a UTF-8 reason) and
  reads a connection to its end: what was answered, the Close, the TCP close;
- expect_* assertions naming the RFC rule a case checks;
- Wire (from hostilekit, which test_tls.py shares): an HTTP/1.1 connection
  with its own buffer, for pipelined answers and answers to HEAD (which have
  no body whatever their Content-Length).

Every wait is bounded: a case that expects the node to close or to answer
fails within WAIT seconds when it does not.
"""

import base64
import hashlib
import os
import socket
import struct
import time

import pytest

import hostilekit as hk
from hostilekit import Wire  # noqa: F401  (the cases import it from here)
from pgtest import API_KEY, wait_until

WAIT = 3.0          # seconds a case waits for an answer, a Close or a TCP close
PING_CMD = b'{"type":"ping"}'    # SPEC §4: answered PONG_CMD
PONG_CMD = b'{"type":"pong"}'
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 §1.3

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = (
    hk.OP_CONT, hk.OP_TEXT, hk.OP_BIN, hk.OP_CLOSE, hk.OP_PING, hk.OP_PONG)
frame = hk.client_frame      # (opcode, payload, fin=True, rsv=0): one masked frame


def padded_cmd(n):
    """The payload of a ping command exactly n bytes long (n >= 22)."""
    head, tail = b'{"type":"ping","p":"', b'"}'
    assert n >= len(head) + len(tail)
    return head + b"x" * (n - len(head) - len(tail)) + tail


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


# --------------------------------------------------------------------------
# The node and the after-case check


def numsub(rds, channel):
    return dict(rds.pubsub_numsub(channel)).get(channel, 0)


def serves_fresh_client(gw, rds, timeout=5.0):
    """The node is alive and a new WebSocket client gets a message
    published through the API (a connect plus one delivery)."""
    assert gw.alive(), "the node exited"
    tag = os.urandom(6).hex()
    with hk.RawWS.open(gw.port, timeout=timeout) as ws:
        assert ws.status == 101, f"a fresh client's upgrade got {ws.status}"
        wait_until(lambda: numsub(rds, "pushgate:broadcast") >= 1, timeout,
                   msg="the node subscribed to broadcast")
        r = gw.publish({"channel": "broadcast", "event": "conformance", "data": tag})
        assert r.status == 200, f"publish after the case: {r}"
        deadline = time.monotonic() + timeout
        while True:
            msg = ws.recv_json(max(0.05, deadline - time.monotonic()))
            if msg.get("data") == tag:
                assert (msg.get("channel"), msg.get("event")) == \
                    ("broadcast", "conformance"), msg
                return


@pytest.fixture
def node(gateway_factory, rds):
    """One node (API key `testkey`, default limits: 65536-byte messages),
    checked after the case to still serve a fresh client."""
    gw = gateway_factory(["--api-key", API_KEY])
    yield gw
    serves_fresh_client(gw, rds)


# --------------------------------------------------------------------------
# WebSocket peer


class Outcome:
    """What a connection did until its Close (or TCP close or timeout):
    frames answered before it (server pings left out), the Close payload."""

    def __init__(self):
        self.frames = []       # [(opcode, payload)]
        self.close = None      # (code or None, reason str) of the server's Close
        self.tcp_closed = False
        self.timed_out = False

    @property
    def code(self):
        return self.close[0] if self.close else None

    def describe(self):
        seen = [(op, p[:60]) for op, p in self.frames]
        if self.close is not None:
            end = f"Close {self.close}"
        elif self.tcp_closed:
            end = "TCP closed without a Close frame"
        else:
            end = f"nothing more within {WAIT:g} s"
        return f"answered {seen}, then {end}"


class Peer(hk.RawWS):
    """A raw WebSocket client (hostilekit.RawWS) that holds the server to
    RFC 6455 §5 on every frame it reads."""

    @classmethod
    def open(cls, port, path="/ws", headers=None, timeout=WAIT):
        ws = super().open(port, path, headers, timeout)
        assert ws.status == 101, f"upgrade answered {ws.status}"
        ws.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ws

    def send(self, data):
        self.s.sendall(data)

    def send_chopped(self, data):
        """The bytes one TCP write each (TCP_NODELAY): frames arrive split
        at every byte (Autobahn's "chopped" cases)."""
        for i in range(len(data)):
            self.s.sendall(data[i:i + 1])

    def next_frame(self, timeout=WAIT):
        """(opcode, payload) of the next server frame, checked against
        RFC 6455 §5. TimeoutError / ConnectionError as RawWS.recv."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        fin, rsv, op = b0 & 0x80, (b0 >> 4) & 7, b0 & 0x0F
        assert not b1 & 0x80, "a server frame is masked (RFC 6455 §5.1: MUST NOT)"
        assert rsv == 0, f"server frame with RSV bits {rsv} and no extension (§5.2)"
        assert op in (0, 1, 2, 8, 9, 10), f"server frame with reserved opcode {op}"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        if op >= 8:
            assert fin and n <= 125, f"server control frame {op}: fin={bool(fin)} len={n} (§5.5)"
        self._need(off + n, deadline)
        payload = bytes(self.buf[off:off + n])
        self.buf = self.buf[off + n:]
        if op == OP_CLOSE:
            assert len(payload) != 1, "server Close with a 1-byte payload (§5.5.1)"
            if len(payload) >= 2:
                code = struct.unpack("!H", payload[:2])[0]
                assert 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015), \
                    f"server Close with code {code}, not one to put in a frame (§7.4)"
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise AssertionError(f"server Close reason is not UTF-8: {payload!r} (§5.5.1)")
        return op, payload

    def outcome(self, expected=(), timeout=WAIT):
        """Read until the server's Close, a TCP close or `timeout`. A frame
        beyond the `expected` answers ([(opcode, payload)]; data frames in
        order, Pongs in order, interleaved freely as in expect_answers)
        fails at once: the node answered what it should not have."""
        out = Outcome()
        deadline = time.monotonic() + timeout
        expected = list(expected)
        while True:
            try:
                op, payload = self.next_frame(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                out.timed_out = True
                return out
            except (ConnectionError, OSError):
                out.tcp_closed = True
                return out
            if op == OP_PING:
                continue            # the node's own keepalive
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                out.close = (code, payload[2:].decode("utf-8"))
                return out
            out.frames.append((op, payload))
            is_ctl = op >= 8
            want = [f for f in expected if (f[0] >= 8) == is_ctl]
            have = [f for f in out.frames if (f[0] >= 8) == is_ctl]
            seen = [(o, p[:60]) for o, p in out.frames]
            assert len(have) <= len(want), \
                f"unexpected answer {(op, payload[:80])} (answers so far: {seen})"
            assert have[-1] == want[len(have) - 1], \
                f"answer {(op, payload[:80])}, want {want[len(have) - 1]}"

    def pongs_until_quiet(self, quiet=0.5, timeout=WAIT):
        """The payloads of the Pongs that arrive until the answer to a ping
        command sent last has come and `quiet` seconds pass with nothing
        more (bounded by timeout). Anything else but the node's Pings and
        that one answer fails."""
        pongs, answered = [], False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                op, payload = self.next_frame(min(left, quiet) if answered else left)
            except TimeoutError:
                break
            if op == OP_PONG:
                pongs.append(payload)
            elif op == OP_TEXT and payload == PONG_CMD and not answered:
                answered = True
            else:
                assert op == OP_PING, f"unexpected {(op, payload[:80])}"
        assert answered, f"the ping command was not answered (Pongs: {pongs})"
        return pongs

    def reply_close(self, code):
        """The client's Close in reply (§5.5.1); errors ignored (the node
        may already have closed)."""
        payload = b"" if code is None else struct.pack("!H", 1000)
        try:
            self.s.sendall(frame(OP_CLOSE, payload))
        except OSError:
            pass

    def tcp_closed_within(self, timeout=WAIT):
        """True if the node closes the TCP connection within timeout. A
        data frame it sends meanwhile fails: "The application MUST NOT
        send any more data frames after sending a Close frame" (§5.5.1);
        a control frame (its keepalive Ping) is let through."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                op, payload = self.next_frame(left)
            except TimeoutError:
                return False
            except (ConnectionError, OSError):
                return True
            assert op >= 8, f"the node sent data {(op, payload[:80])} after its Close"


def _split(frames):
    """(data frames, control frames), each in order."""
    return ([f for f in frames if f[0] < 8], [f for f in frames if f[0] >= 8])


def expect_answers(ws, expected, timeout=WAIT):
    """Exactly `expected` ([(opcode, payload)]) comes back, nothing closes.
    Data frames must come in the expected order, and so must Pongs; how
    the two interleave is free (a Pong is sent "as soon as is practical",
    §5.5.2, which may be after the answer to a message already read)."""
    got = []
    while len(got) < len(expected):
        try:
            op, payload = ws.next_frame(timeout)
        except TimeoutError:
            raise AssertionError(f"got {got}, then nothing within {timeout:g} s; "
                                 f"want {expected}")
        except (ConnectionError, OSError):
            raise AssertionError(f"got {got}, then the TCP connection closed; "
                                 f"want {expected}")
        if op == OP_PING:
            continue
        got.append((op, payload))
        is_ctl = op >= 8
        want = [f for f in expected if (f[0] >= 8) == is_ctl]
        have = [f for f in got if (f[0] >= 8) == is_ctl]
        assert len(have) <= len(want) and have[-1] == want[len(have) - 1], \
            f"got {[(o, p[:80]) for o, p in got]}, want {expected}"


def expect_pong_cmd(ws):
    """The ping command sent is answered {"type":"pong"} (SPEC §4): the
    node took the text frame as valid and whole."""
    expect_answers(ws, [(OP_TEXT, PONG_CMD)])


def expect_fail(ws, code, answered=(), timeout=WAIT):
    """The node _Fails the WebSocket Connection_ (RFC 6455 §7.1.7): what
    came before the violation is answered (`answered`), then a Close with
    `code` (§7.1.7: "SHOULD send a Close frame with an appropriate status
    code"), and nothing sent after the violation is processed (a case puts
    a command behind the bad bytes: its answer would come before the
    Close). The client replies Close. That the node then closes TCP at
    once is one case of its own (test_ws_close.py), not asserted here:
    after a failure lws may read the bytes that follow as garbage and wait
    for its Close timeout, and one fix must flip one case."""
    out = ws.outcome(answered, timeout)
    assert out.close is not None, f"want Close {code}; {out.describe()}"
    assert _split(out.frames) == _split(answered), out.describe()
    assert out.code == code, f"want Close {code}; {out.describe()}"
    ws.reply_close(out.code)


def expect_close_reply(ws, codes, answered=(), timeout=WAIT):
    """After the client's Close the node answers Close (§5.5.1: MUST) with
    a code in `codes` (None: an empty Close), answers nothing else, and
    closes TCP (§7.1.1: the server closes first)."""
    out = ws.outcome(answered, timeout)
    assert out.close is not None, f"want a Close in reply; {out.describe()}"
    assert _split(out.frames) == _split(answered), out.describe()
    assert out.code in codes, f"Close reply {out.close}, want a code in {codes}"
    assert ws.tcp_closed_within(), "TCP left open after the Close handshake"


# --------------------------------------------------------------------------
# HTTP/1.1 on a raw connection


def request(method, target, fields=(), version="HTTP/1.1", body=b""):
    """The exact bytes of a request: the request line, each (name, value)
    of fields as one line in order (str values are latin-1), a blank line,
    the body. Nothing is added: no Host, no Content-Length."""
    out = f"{method} {target} {version}\r\n".encode("latin-1")
    for k, v in fields:
        out += k.encode("latin-1") + b": " + (v if isinstance(v, bytes) else
                                             v.encode("latin-1")) + b"\r\n"
    return out + b"\r\n" + body


def host(node):
    return ("Host", f"127.0.0.1:{node.port}")


def exchange(node, data, head_request=False, timeout=WAIT):
    """Send data on a new connection, return (Answer, Wire)."""
    w = Wire(node.port, timeout)
    w.send(data)
    return w.answer(head_request, timeout), w


def publish_fields(node, body=None):
    """The fields of a good POST /api/publish (Content-Length for body)."""
    f = [host(node), ("Authorization", f"Bearer {API_KEY}"),
         ("Content-Type", "application/json")]
    if body is not None:
        f.append(("Content-Length", str(len(body))))
    return f


def history_len(rds, channel):
    """How many messages were published with history on channel (SPEC §3)."""
    return rds.xlen(f"pushgate:history:{channel}")


def ws_upgrade_fields(node, key="dGhlIHNhbXBsZSBub25jZQ=="):
    """The header fields of a valid client handshake (RFC 6455 §4.1)."""
    return [host(node), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]


def without(fields, name):
    return [(k, v) for k, v in fields if k.lower() != name.lower()]


def replace(fields, name, value):
    return [(k, value if k.lower() == name.lower() else v) for k, v in fields]


def deviation(today):
    """The marker of a case the node fails today: a strict xfail, so the
    fix that makes it pass must also remove the marker."""
    return pytest.mark.xfail(strict=True, reason=f"issue 14: {today}")
