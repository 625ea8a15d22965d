"""Hostile input and access control (SPEC §6, issue 3).

Every refusal is checked beside the matching acceptance, so a test cannot
pass because nothing works at all. Raw sockets (hostilekit) send what polite
clients will not: bad frames, huge heads, chunked bodies, garbage."""

import asyncio
import hashlib
import hmac
import json
import signal
import statistics
import subprocess
import sys
import time
from urllib.parse import quote

import pytest

import hostilekit as hk
from pgtest import (API_KEY, async_wait_until, gen_ec_key, gen_rsa_key, http_request,
                    b64url, metric_value, mint_es256, mint_hs256, mint_rs256, run,
                    sse_connect, stop_process, wait_until, ws_connect,
                    ws_handshake_status)

SECRET = "hs256-secret-for-hostile-tests"


def now():
    return int(time.time())


async def sse_status(gw, query="", headers=None):
    """(status, body) of an SSE request; the stream is closed at once."""
    c = await sse_connect(gw, query, headers)
    try:
        body = await c.read_all(2) if c.status != 200 else b""
        return c.status, body
    finally:
        await c.close()


def assert_refused(gw, status, query="", headers=None):
    """Both transports refuse with status before any upgrade or stream,
    and SSE says why in a JSON {"error": ...} body."""
    async def go():
        ws = await ws_handshake_status(gw, query, headers)
        sse, body = await sse_status(gw, query, headers)
        return ws, sse, body
    ws, sse, body = run(go(), 20)
    assert ws == status, f"WS handshake got {ws}, want {status}"
    assert sse == status, f"SSE got {sse} {body!r}, want {status}"
    hk.json_error(body)


def assert_accepted(gw, query="", headers=None):
    async def go():
        ws = await ws_handshake_status(gw, query, headers)
        sse, body = await sse_status(gw, query, headers)
        return ws, sse, body
    ws, sse, body = run(go(), 20)
    assert (ws, sse) == (101, 200), f"expected acceptance, got WS {ws}, SSE {sse} {body!r}"


# --------------------------------------------------------------------------
# Tokens


def _unsigned(header, claims):
    return (b64url(json.dumps(header).encode()) + "." +
            b64url(json.dumps(claims).encode()))


BAD_HS_TOKENS = {
    "malformed": lambda: "not-a-jwt",
    "two_parts": lambda: "abc.def",
    "garbage_b64": lambda: "!!!.@@@.###",
    "expired": lambda: mint_hs256(SECRET, {"sub": "42", "exp": now() - 60}),
    "not_yet_valid": lambda: mint_hs256(SECRET, {"sub": "42", "nbf": now() + 3600}),
    "wrong_secret": lambda: mint_hs256("another-secret", {"sub": "42"}),
    "alg_none": lambda: _unsigned({"alg": "none", "typ": "JWT"},
                                  {"sub": "42", "exp": now() + 3600}) + ".",
    "alg_none_with_sig": lambda: _unsigned({"alg": "none"}, {"sub": "42"}) + ".c2ln",
    "sub_not_a_channel": lambda: mint_hs256(SECRET, {"sub": "a b/c"}),
    "sub_not_a_string": lambda: mint_hs256(SECRET, {"sub": 42}),
    "channels_not_a_list": lambda: mint_hs256(SECRET, {"sub": "42", "channels": "news"}),
    "exp_not_a_number": lambda: mint_hs256(SECRET, {"sub": "42", "exp": "never"}),
    "alg_hs512": lambda: (lambda si: si + "." + b64url(hmac.new(
        SECRET.encode(), si.encode(), hashlib.sha512).digest()))(
        _unsigned({"alg": "HS512", "typ": "JWT"}, {"sub": "42", "exp": now() + 60})),
    "tampered_claims": lambda: (lambda t: t.split(".")[0] + "." +
                                b64url(json.dumps({"sub": "admin", "exp": now() + 3600}).encode())
                                + "." + t.split(".")[2])(mint_hs256(SECRET, {"sub": "42"})),
}


@pytest.mark.parametrize("case", sorted(BAD_HS_TOKENS))
def test_bad_hs256_token_is_refused_401_before_upgrade_or_stream(gateway_factory, case):
    gw = gateway_factory(["--jwt-secret", SECRET])
    tok = BAD_HS_TOKENS[case]()
    assert_refused(gw, 401, f"token={quote(tok, safe='')}")
    assert_refused(gw, 401, headers={"Authorization": f"Bearer {tok}"})
    # The same node takes a good token both ways.
    good = mint_hs256(SECRET, {"sub": "42"})
    assert_accepted(gw, f"token={good}")
    assert_accepted(gw, headers={"Authorization": f"Bearer {good}"})


def test_big_token_works_and_one_past_the_head_limit_is_dropped(gateway_factory):
    gw = gateway_factory(["--jwt-secret", SECRET])
    chans = [f"team-number-{i}.*" for i in range(200)]
    big = mint_hs256(SECRET, {"sub": "42", "channels": chans})
    assert 2000 < len(big) < 6000
    assert_accepted(gw, f"token={big}&channels=team-number-199.x")
    assert_accepted(gw, headers={"Authorization": f"Bearer {big}"})
    huge = mint_hs256(SECRET, {"sub": "42", "pad": "x" * 9000})
    for query, headers in ((f"token={huge}", None),
                           ("", {"Authorization": f"Bearer {huge}"})):
        async def go():
            try:
                return await ws_handshake_status(gw, query, headers)
            except Exception as e:  # closed without an answer
                return type(e).__name__
        got = run(go(), 20)
        assert got != 101 and not (isinstance(got, int) and got < 400), got
    assert gw.get("/healthz").status == 200


def test_missing_token_is_401_unless_anonymous_allowed(gateway_factory):
    strict = gateway_factory(["--jwt-secret", SECRET], name="strict")
    assert_refused(strict, 401)
    assert_refused(strict, 401, headers={"Authorization": "Bearer "})
    assert_refused(strict, 401, headers={"Authorization": "Basic dXNlcjpwdw=="})
    anon = gateway_factory(["--jwt-secret", SECRET, "--allow-anonymous"], name="anon")
    assert_accepted(anon)
    # A bad token is still refused when anonymous access is allowed.
    assert_refused(anon, 401, f"token={mint_hs256('wrong', {'sub': '1'})}")


def test_rs256_config_refuses_hs256_signed_with_the_public_key(gateway_factory, tmp_path):
    key, pem = gen_rsa_key(tmp_path)
    gw = gateway_factory(["--jwt-public-key", pem])
    assert_accepted(gw, f"token={mint_rs256(key, {'sub': '42'})}")
    pem_bytes = open(pem, "rb").read()
    for secret in (pem_bytes, pem_bytes.strip()):
        assert_refused(gw, 401, f"token={mint_hs256(secret, {'sub': '42'})}")
    (tmp_path / "other").mkdir()
    other, _ = gen_rsa_key(tmp_path / "other")
    assert_refused(gw, 401, f"token={mint_rs256(other, {'sub': '42'})}")
    assert_refused(gw, 401, f"token={mint_rs256(key, {'sub': '42', 'exp': now() - 5})}")
    assert_refused(gw, 401, f"token={mint_rs256(key, {'sub': '42', 'nbf': now() + 600})}")
    assert_refused(gw, 401, f"token={_unsigned({'alg': 'none'}, {'sub': '42'})}.")


def test_es256_config_refuses_other_algs_and_keys(gateway_factory, tmp_path):
    key, pem = gen_ec_key(tmp_path)
    gw = gateway_factory(["--jwt-public-key", pem])
    assert_accepted(gw, f"token={mint_es256(key, {'sub': '42'})}")
    rsa, _ = gen_rsa_key(tmp_path)
    assert_refused(gw, 401, f"token={mint_rs256(rsa, {'sub': '42'})}")
    assert_refused(gw, 401, f"token={mint_hs256(open(pem, 'rb').read(), {'sub': '42'})}")
    assert_refused(gw, 401, f"token={mint_es256(key, {'sub': '42', 'exp': now() - 5})}")


# --------------------------------------------------------------------------
# Origin


def test_origin_not_in_the_list_is_403_on_ws_sse_and_publish(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY, "--allowed-origins",
                          "https://app.example.com,https://*.example.org"])
    for origin in ("https://evil.example.net", "https://app.example.com.evil.io",
                   "http://app.example.com", "https://example.org", "null",
                   "https://" + "a" * 600 + ".example.org"):  # oversized: not "absent"
        assert_refused(gw, 403, headers={"Origin": origin})
        r = http_request(gw.port, "POST", "/api/publish",
                         {"Origin": origin, "Authorization": f"Bearer {API_KEY}"},
                         {"channel": "news", "data": 1})
        assert r.status == 403, (origin, r)
    for origin in ("https://app.example.com", "https://a.b.example.org"):
        assert_accepted(gw, headers={"Origin": origin})
        r = http_request(gw.port, "POST", "/api/publish",
                         {"Origin": origin, "Authorization": f"Bearer {API_KEY}"},
                         {"channel": "news", "data": 1})
        assert r.status == 200, (origin, r)
    assert_accepted(gw)  # no Origin: not a browser


def test_empty_origin_list_allows_only_the_host_itself(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY])
    same = f"http://127.0.0.1:{gw.port}"
    assert_accepted(gw, headers={"Origin": same})
    for origin in ("http://evil.example", f"http://127.0.0.2:{gw.port}",
                   f"http://127.0.0.1:{gw.port + 1}"):
        assert_refused(gw, 403, headers={"Origin": origin})
        r = http_request(gw.port, "POST", "/api/publish",
                         {"Origin": origin, "Authorization": f"Bearer {API_KEY}"},
                         {"channel": "news", "data": 1})
        assert r.status == 403, (origin, r)


# --------------------------------------------------------------------------
# Channels


def test_forbidden_channel_403_at_connect_and_error_frame_on_subscribe(gateway_factory):
    gw = gateway_factory(["--jwt-secret", SECRET, "--public-topics", "news"])
    tok = mint_hs256(SECRET, {"sub": "42", "channels": ["team.*"]})
    assert_refused(gw, 403, f"token={tok}&channels=news,secret")
    assert_refused(gw, 403, f"token={tok}&channels=user:43")
    assert_accepted(gw, f"token={tok}&channels=news,team.red,user:42")

    async def go():
        c = await ws_connect(gw, f"token={tok}")
        try:
            for ch in ("secret", "user:43", "_internal", "team"):
                await c.send_json({"type": "subscribe", "channel": ch})
                err = await c.recv_json()
                assert err.get("type") == "error", (ch, err)
                if ch != "_internal":
                    assert err.get("code") == "forbidden", (ch, err)
                assert isinstance(err.get("message"), str), err
            await c.send_json({"type": "ping"})
            assert await c.recv_json() == {"type": "pong"}
            await c.send_json({"type": "subscribe", "channel": "team.blue"})
            assert (await c.recv_json()) == {"type": "subscribed", "channel": "team.blue"}
        finally:
            await c.close()
    run(go(), 30)


@pytest.mark.parametrize("query", [
    "channels=news%2Csecret", "channels=%73ecret", "channels=news&channels=secret",
    "channels=secret&channels=news", "channels=news,secret*", "channels=news%00secret",
    "channels=news,SECRET", "channels=news,%20secret",
])
def test_query_tricks_never_open_a_forbidden_channel(gateway_factory, rds, query):
    """Encoded commas, duplicate parameters, NULs: the node may refuse or
    take the request as harmless, but a message on "secret" must never reach
    the client. A publish to "news" afterwards is the sentinel: it must be
    the next (and only) thing delivered."""
    gw = gateway_factory(["--api-key", API_KEY, "--public-topics", "news"])
    # secret has history too, so a recovery path could leak it as well
    assert gw.publish({"channel": "secret", "data": "OLD-LEAK"}).status == 200

    async def go():
        try:
            c = await ws_connect(gw, query + "&since=0")
        except Exception:
            return "refused"
        try:
            await async_wait_until(
                lambda: dict(rds.pubsub_numsub("pushgate:news")).get("pushgate:news", 0) >= 1,
                5, msg="news subscribed")
            assert dict(rds.pubsub_numsub("pushgate:secret")).get("pushgate:secret", 0) == 0
            assert gw.publish({"channel": "secret", "data": "LEAK"}).status == 200
            assert gw.publish({"channel": "news", "data": "FIN"}).status == 200
            while True:
                msg = await c.recv_json()
                assert msg.get("channel") != "secret", msg
                if msg.get("type") == "recovery":
                    continue
                if msg.get("data") == "FIN":
                    return "accepted, nothing leaked"
        finally:
            await c.close()
    run(go(), 30)
    assert gw.get("/healthz").status == 200


def test_subscribe_with_since_to_a_forbidden_channel_replays_nothing(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY, "--public-topics", "news"])
    assert gw.publish({"channel": "secret", "data": "OLD-LEAK"}).status == 200
    assert gw.publish({"channel": "news", "data": "n1"}).status == 200

    async def go():
        c = await ws_connect(gw)
        try:
            await c.send_json({"type": "subscribe", "channel": "secret", "since": "0"})
            err = await c.recv_json()
            assert err.get("type") == "error" and err.get("code") == "forbidden", err
            await c.send_json({"type": "subscribe", "channel": "news", "since": "0"})
            n1, before = await c.recv_until(lambda m: m.get("data") == "n1")
            assert {"type": "subscribed", "channel": "news"} in before, before
            assert all(m.get("type") in ("subscribed", "recovery") for m in before), before
            await c.send_json({"type": "ping"})
            assert await c.recv_json() == {"type": "pong"}  # nothing from secret before it
        finally:
            await c.close()
    run(go(), 30)


# --------------------------------------------------------------------------
# /api/publish and routing


def post(gw, body, key=API_KEY, headers=None, raw=False):
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    if not raw and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return http_request(gw.port, "POST", "/api/publish", h, body)


def test_publish_without_configured_key_is_403(gateway_factory):
    gw = gateway_factory([])
    r = post(gw, {"channel": "news", "data": 1})
    assert r.status == 403, r
    hk.json_error(r.body)
    assert post(gw, {"channel": "news", "data": 1}, key=None).status == 403


def test_publish_missing_or_wrong_key_is_401(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY])
    for key in (None, "", "wrong", API_KEY + "x", API_KEY[:-1], API_KEY.upper()):
        r = post(gw, {"channel": "news", "data": 1}, key=key)
        assert r.status == 401, (key, r)
        hk.json_error(r.body)
    r = http_request(gw.port, "POST", "/api/publish",
                     {"Authorization": f"Basic {API_KEY}"}, {"channel": "news", "data": 1})
    assert r.status == 401, r
    assert post(gw, {"channel": "news", "data": 1}).status == 200


@pytest.mark.parametrize("body,mention", [
    (b"not json", "json"),
    (b"", "json"),
    (b"[1,2]", "object"),
    (b'{"channel":"news"}', "data"),
    (b'{"data":1}', "channel"),
    (b'{"channel":"bad name","data":1}', "channel"),
    (b'{"channel":"","data":1}', "channel"),
    (b'{"channel":"' + b"a" * 129 + b'","data":1}', "channel"),
    (b'{"channel":42,"data":1}', "channel"),
    (b'{"channel":"_x","data":1}', "channel"),
    (b'{"channel":"news","event":5,"data":1}', "event"),
    (b'{"channels":[],"data":1}', "channel"),
    (b'{"channels":["news","bad name"],"data":1}', "channel"),
    (b'{"channel":"news","data":1', "json"),
])
def test_publish_bad_body_is_400_naming_the_problem(gateway_factory, rds, body, mention):
    gw = gateway_factory(["--api-key", API_KEY])
    r = post(gw, body, raw=True)
    assert r.status == 400, r
    assert mention in hk.json_error(r.body).lower(), r
    # Nothing was published: the history of the named channels stays empty.
    assert not rds.keys("pushgate:history:*"), rds.keys("pushgate:history:*")


def test_publish_body_over_limit_is_413(gateway_factory, rds):
    gw = gateway_factory(["--api-key", API_KEY, "--max-message-bytes", "1024"])
    big = json.dumps({"channel": "news", "data": "x" * 2000}).encode()
    r = post(gw, big, raw=True)
    assert r.status == 413, r
    hk.json_error(r.body)
    # A lying Content-Length (small) with a big body: the body is still capped.
    st, _, body = hk.raw_request(gw.port, hk.request_bytes(
        "POST", "/api/publish", gw.port,
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
         "Content-Length": "2000"}, big[:2000]))
    assert st == 413, (st, body)
    assert not rds.keys("pushgate:history:*")
    small = json.dumps({"channel": "news", "data": "x" * 900}).encode()
    assert len(small) <= 1024 and post(gw, small, raw=True).status == 200


def test_publish_chunked_body_gets_an_answer(gateway_factory):
    """lws 4.1 cannot read chunked request bodies: on a plain connection the
    node decodes them itself (relay.c), so the small one is published and
    the big one refused 413 at once; over TLS lws answers 411. Never left
    hanging until a timeout."""
    gw = gateway_factory(["--api-key", API_KEY, "--max-message-bytes", "1024"])
    hdrs = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}
    big = json.dumps({"channel": "news", "data": "x" * 2000}).encode()
    st, _, body = hk.raw_request(gw.port, hk.request_bytes(
        "POST", "/api/publish", gw.port, hdrs, hk.chunked(big, 300)), timeout=3)
    assert st == 413, (st, body)
    small = json.dumps({"channel": "news", "data": "x" * 100}).encode()
    st, _, body = hk.raw_request(gw.port, hk.request_bytes(
        "POST", "/api/publish", gw.port, hdrs, hk.chunked(small, 30)), timeout=3)
    assert st == 200, (st, body)
    # and the same when the client says it will close after it
    st, _, body = hk.raw_request(gw.port, hk.request_bytes(
        "POST", "/api/publish", gw.port, dict(hdrs, Connection="close"),
        hk.chunked(small, 30)), timeout=3)
    assert st == 200, (st, body)


@pytest.mark.parametrize("length", ["-1", "99999999999999999999999"])
def test_publish_unparseable_content_length_is_answered(gateway_factory, length):
    gw = gateway_factory(["--api-key", API_KEY, "--max-message-bytes", "1024"])
    body = b'{"channel":"news","data":1}'
    st, _, raw = hk.raw_request(gw.port, hk.request_bytes(
        "POST", "/api/publish", gw.port,
        {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json",
         "Content-Length": length}, body), timeout=3)
    assert st in (400, 413), (st, raw)


def test_deeply_nested_json_is_answered_everywhere(gateway_factory, rds):
    gw = gateway_factory(["--api-key", API_KEY])
    n = 20000
    nested = b"[" * n + b"]" * n

    async def go():
        c = await ws_connect(gw)
        try:
            await async_wait_until(
                lambda: dict(rds.pubsub_numsub("pushgate:broadcast")).get(
                    "pushgate:broadcast", 0) >= 1, 5, msg="broadcast subscribed")
            r = post(gw, b'{"channel":"broadcast","data":' + nested + b"}", raw=True)
            assert r.status == 400, r
            hk.json_error(r.body)
            rds.publish("pushgate:broadcast", b'{"data":' + nested + b"}")
            msg = await c.recv_json()  # too deep to rebuild: delivered as text
            assert msg["channel"] == "broadcast" and isinstance(msg["data"], str), msg
            assert msg["data"].startswith('{"data":[[['), msg["data"][:40]
            await c.send('{"type":"ping","x":' + nested.decode() + "}")
            err = await c.recv_json()
            assert err.get("type") == "error", err
            await c.send_json({"type": "ping"})
            assert await c.recv_json() == {"type": "pong"}
        finally:
            await c.close()
    run(go(), 30)
    assert gw.alive()


def test_method_is_checked_before_the_key_and_unknown_paths_404(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY])
    for method in ("GET", "PUT", "DELETE"):
        r = http_request(gw.port, method, "/api/publish")
        assert r.status == 405, (method, r)
    assert http_request(gw.port, "POST", "/healthz", body=b"{}").status == 405
    for path in ("/nope", "/api/nope", "/ws/../etc/passwd", "/" + "a" * 2000):
        r = http_request(gw.port, "GET", path)
        assert r.status in (400, 404), (path, r)
    assert http_request(gw.port, "GET", "/nope").status == 404
    assert gw.get("/healthz").status == 200


# --------------------------------------------------------------------------
# Connection limit


def test_more_than_max_connections_is_503_for_ws_and_sse(gateway_factory):
    gw = gateway_factory(["--max-connections", "3"])

    async def go():
        held = [await ws_connect(gw), await ws_connect(gw)]
        s = await sse_connect(gw)
        assert s.status == 200
        held.append(s)
        try:
            assert await ws_handshake_status(gw) == 503
            st, body = await sse_status(gw)
            assert st == 503, (st, body)
            await held.pop().close()  # the SSE stream
            await async_wait_until(
                lambda: metric_value(gw.metrics(), "pushgate_connections",
                                     {"transport": "sse"}) == 0, 5, msg="sse gauge 0")
            assert await ws_handshake_status(gw) == 101
        finally:
            for c in held:
                await c.close()
    run(go(), 30)
    assert gw.get("/healthz").status == 200


# --------------------------------------------------------------------------
# WebSocket frames


def test_ws_frame_over_limit_closes_1009(gateway_factory):
    gw = gateway_factory(["--max-message-bytes", "1024"])
    with hk.RawWS.open(gw.port) as ws:
        assert ws.status == 101
        ws.send_json({"type": "ping", "pad": "x" * 900})
        assert ws.recv_json() == {"type": "pong"}
        ws.send_text(json.dumps({"type": "ping", "pad": "x" * 2000}))
        assert ws.close_code() == 1009


def test_ws_binary_frame_closes_1003(gateway_factory):
    gw = gateway_factory([])
    with hk.RawWS.open(gw.port) as ws:
        assert ws.status == 101
        ws.frame(hk.OP_BIN, b'{"type":"ping"}')
        assert ws.close_code() == 1003


def test_ws_invalid_utf8_closes_1007(gateway_factory):
    gw = gateway_factory([])
    with hk.RawWS.open(gw.port) as ws:
        assert ws.status == 101
        ws.frame(hk.OP_TEXT, b'{"type":"ping","x":"\xc3\x28\xff"}')
        assert ws.close_code() == 1007


@pytest.mark.parametrize("frame,code", [
    ("not json", "bad_json"),
    ("[]", "bad_json"),
    ('{"channel":"news"}', "bad_command"),
    ('{"type":"dance"}', "unknown_type"),
    ('{"type":"subscribe","channel":"bad name"}', "bad_channel"),
    ('{"type":"subscribe","channel":"news","since":"-1"}', "bad_since"),
])
def test_ws_malformed_command_gets_error_and_connection_stays(gateway_factory, frame, code):
    gw = gateway_factory(["--public-topics", "news"])
    with hk.RawWS.open(gw.port) as ws:
        ws.send_text(frame)
        err = ws.recv_json()
        assert err.get("type") == "error" and err.get("code") == code, err
        ws.send_json({"type": "ping"})
        assert ws.recv_json() == {"type": "pong"}


def test_ws_fragmented_command_is_reassembled(gateway_factory):
    gw = gateway_factory(["--public-topics", "news"])
    msg = b'{"type":"subscribe","channel":"news"}'
    with hk.RawWS.open(gw.port) as ws:
        ws.frame(hk.OP_TEXT, msg[:10], fin=False)
        ws.frame(hk.OP_CONT, msg[10:25], fin=False)
        ws.frame(hk.OP_PING, b"mid")  # a control frame may come between fragments
        ws.frame(hk.OP_CONT, msg[25:], fin=True)
        got = []
        while len(got) < 2:
            op, payload = ws.recv()
            got.append((op, payload))
        assert (hk.OP_PONG, b"mid") in got, got
        assert (hk.OP_TEXT, b'{"type":"subscribed","channel":"news"}') in got, got


PROTOCOL_VIOLATIONS = {
    "continuation_first": lambda: hk.client_frame(hk.OP_CONT, b'{"type":"ping"}'),
    "rsv_bit_set": lambda: hk.client_frame(hk.OP_TEXT, b'{"type":"ping"}', rsv=4),
    "reserved_opcode": lambda: hk.client_frame(3, b"x"),
    "fragmented_ping": lambda: hk.client_frame(hk.OP_PING, b"x", fin=False),
    "text_inside_text": lambda: (hk.client_frame(hk.OP_TEXT, b'{"ty', fin=False) +
                                 hk.client_frame(hk.OP_TEXT, b'pe":"ping"}')),
    "ping_over_125": lambda: hk.client_frame(hk.OP_PING, b"p" * 200),
    "length_2e62": lambda: (b"\x81\xff" + (1 << 62).to_bytes(8, "big") + b"\0" * 4 +
                            b"x" * 2000),
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_VIOLATIONS))
def test_ws_protocol_violation_closes_only_that_connection(gateway_factory, case):
    gw = gateway_factory(["--max-message-bytes", "1024"])
    with hk.RawWS.open(gw.port) as bystander, hk.RawWS.open(gw.port) as ws:
        ws.s.sendall(PROTOCOL_VIOLATIONS[case]())
        try:
            code = ws.close_code()
            assert code in (1002, 1009), code
        except ConnectionError:
            pass  # lws may also drop the TCP connection at once
        bystander.send_json({"type": "ping"})
        assert bystander.recv_json() == {"type": "pong"}
    assert gw.get("/healthz").status == 200


def test_ws_fragments_over_limit_close_1009(gateway_factory):
    gw = gateway_factory(["--max-message-bytes", "1024"])
    with hk.RawWS.open(gw.port) as ws:
        ws.frame(hk.OP_TEXT, b'{"type":"ping","p":"' + b"x" * 600, fin=False)
        ws.frame(hk.OP_CONT, b"x" * 600, fin=False)
        ws.frame(hk.OP_CONT, b'"}', fin=True)
        assert ws.close_code() == 1009


def flood(port, n=150):
    """Send n pings in one write (so the node reads the whole burst before
    it closes, and the close is a FIN, not a reset that would eat the
    replies); return (pongs, other JSON frames, close code)."""
    with hk.RawWS.open(port) as ws:
        ws.s.sendall(b"".join(hk.client_frame(hk.OP_TEXT, b'{"type":"ping"}')
                              for _ in range(n)))
        pongs, others, code = 0, [], None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            op, payload = ws.recv(5)
            if op == hk.OP_CLOSE:
                code = int.from_bytes(payload[:2], "big")
                break
            msg = json.loads(payload)
            if msg == {"type": "pong"}:
                assert not others, f"pong after {others}"
                pongs += 1
            else:
                others.append(msg)
        return pongs, others, code


def test_ws_command_flood_is_closed_1008(gateway_factory):
    gw = gateway_factory([])
    pongs, others, code = flood(gw.port)
    assert code == 1008
    assert 90 <= pongs <= 100, pongs
    # A well-behaved client on the same node is unaffected.
    with hk.RawWS.open(gw.port) as ws:
        for _ in range(20):
            ws.send_json({"type": "ping"})
            assert ws.recv_json() == {"type": "pong"}


def test_ws_command_flood_gets_rate_limited_error_before_close(gateway_factory):
    gw = gateway_factory([])
    pongs, others, code = flood(gw.port)
    assert code == 1008
    assert len(others) == 1 and others[0].get("type") == "error" and \
        others[0].get("code") == "rate_limited", others


# --------------------------------------------------------------------------
# HTTP heads: size bound and slowloris


def test_100kb_header_is_dropped_and_the_node_keeps_serving(gateway_factory):
    """lws keeps at most max_http_header_data = 8192 bytes of head. What a
    client sees past that (found by this test): the connection is closed
    without any answer. A 4xx would do as well; a 2xx or a hang would not."""
    gw = gateway_factory([])
    ok = hk.request_bytes("GET", "/healthz", gw.port, {"X-Pad": "a" * 6000})
    assert hk.raw_request(gw.port, ok)[0] == 200  # a big but legal head works
    for size in (9000, 100 * 1024):
        for path in ("/healthz", "/ws", "/sse"):
            with hk.connect(gw.port) as s:
                try:
                    s.sendall(hk.request_bytes("GET", path, gw.port, {"X-Big": "a" * size}))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # closed while we were still sending: refused
                status, _, raw = hk.read_http_response(s)
                assert status is None or 400 <= status < 500, (size, path, status, raw)
                _, closed = hk.recv_until_closed(s, timeout=5)
                assert closed, f"{size}-byte header on {path}: connection left open"
    assert gw.get("/healthz").status == 200
    assert gw.alive()


def test_slowloris_heads_are_dropped_and_others_are_served(gateway_factory, rds):
    gw = gateway_factory(["--api-key", API_KEY])
    socks = []
    try:
        t0 = time.monotonic()
        for i in range(50):
            s = hk.connect(gw.port)
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-{i}: ".encode())
            socks.append(s)

        async def legit():
            c = await ws_connect(gw)
            try:
                await async_wait_until(
                    lambda: dict(rds.pubsub_numsub("pushgate:broadcast")).get(
                        "pushgate:broadcast", 0) >= 1, 5, msg="broadcast subscribed")
                for i in range(5):
                    r = gw.publish({"channel": "broadcast", "data": i})
                    assert r.status == 200, r
                    assert (await c.recv_json(3))["data"] == i
                    # keep trickling: one byte a socket, never the end of the head
                    for s in socks:
                        try:
                            s.send(b"a")
                        except OSError:
                            pass
            finally:
                await c.close()
        run(legit(), 30)
        assert gw.get("/healthz", timeout=2).status == 200
        assert time.monotonic() - t0 < 8, "the legit client was served slowly"

        # Each trickler is closed within ~15 s of its first byte, although
        # it keeps sending a byte every half second.
        def all_closed():
            open_left = 0
            for s in socks:
                if s.fileno() == -1:
                    continue
                s.setblocking(False)
                try:
                    d = s.recv(4096)
                except BlockingIOError:
                    try:
                        s.send(b"a")
                        open_left += 1
                        continue
                    except OSError:
                        d = b""
                except OSError:
                    d = b""
                if d:
                    assert not d.startswith(b"HTTP/1.1 200"), d
                s.close()
            return open_left == 0
        wait_until(all_closed, timeout=20, interval=0.5, msg="slowloris sockets closed")
        assert time.monotonic() - t0 < 20
        assert gw.get("/healthz").status == 200
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------
# Oversized Redis payload


def test_oversized_redis_payload_is_dropped_counted_and_next_delivered(gateway_factory, rds):
    gw = gateway_factory(["--max-message-bytes", "1024"])

    async def go():
        c = await ws_connect(gw)
        try:
            await async_wait_until(
                lambda: dict(rds.pubsub_numsub("pushgate:broadcast")).get(
                    "pushgate:broadcast", 0) >= 1, 5, msg="broadcast subscribed")
            before = metric_value(gw.metrics(), "pushgate_messages_dropped_total") or 0
            rds.publish("pushgate:broadcast", json.dumps({"data": "x" * 2000}))
            rds.publish("pushgate:broadcast", "y" * 1025)
            rds.publish("pushgate:broadcast", json.dumps({"event": "next", "data": 1}))
            msg = await c.recv_json()
            assert msg == {"channel": "broadcast", "event": "next", "data": 1}, msg
            await async_wait_until(
                lambda: metric_value(gw.metrics(), "pushgate_messages_dropped_total")
                == before + 2, 5, msg="2 drops counted")
        finally:
            await c.close()
    run(go(), 30)


def test_idle_sockets_do_not_block_new_clients(gateway_factory):
    """100 sockets that connect and never send must not hold the header
    tables every new request needs (lws's pool was 64: a 64-socket DoS)."""
    gw = gateway_factory([])
    socks = []
    try:
        for _ in range(100):
            socks.append(hk.connect(gw.port))
        wait_until(lambda: hk.open_fds(gw.pid) >= 100, 5, msg="node accepted the sockets")
        t0 = time.monotonic()
        assert gw.get("/healthz", timeout=12).status == 200
        assert time.monotonic() - t0 < 1.0, \
            f"/healthz took {time.monotonic() - t0:.1f} s behind 100 idle sockets"
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------
# Garbage while a legitimate client listens


def test_garbage_connections_leave_a_legit_stream_whole_and_fast(gateway_factory, rds):
    gw = gateway_factory([])

    async def one(c, i, tag, lat):
        t = time.monotonic()
        rds.publish("pushgate:broadcast", json.dumps({"event": tag, "data": i}))
        msg = await c.recv_json(5)
        lat.append(time.monotonic() - t)
        assert msg == {"channel": "broadcast", "event": tag, "data": i}, msg

    async def stream(c, n, tag):
        """Publish n numbered messages one at a time; each must be the next
        one received (nothing lost, nothing out of order). Returns the
        latencies in seconds."""
        lat = []
        for i in range(n):
            await one(c, i, tag, lat)
        return lat

    async def stream_until(c, fut, tag, lat, extra=0.0):
        """Keep streaming, a message every 5 ms, until fut is done, then for
        extra seconds more."""
        i = 0
        while not fut.done():
            await one(c, i, tag, lat)
            i += 1
            await asyncio.sleep(0.005)
        end = time.monotonic() + extra
        while time.monotonic() < end:
            await one(c, i, tag, lat)
            i += 1
            await asyncio.sleep(0.005)
        return fut.result()

    async def go():
        c = await ws_connect(gw)
        await async_wait_until(
            lambda: dict(rds.pubsub_numsub("pushgate:broadcast")).get(
                "pushgate:broadcast", 0) >= 1, 5, msg="broadcast subscribed")
        await stream(c, 50, "warmup")
        rss0, fds0 = hk.rss_kb(gw.pid), hk.open_fds(gw.pid)
        base = await stream(c, 100, "base")
        attacker = subprocess.Popen(
            [sys.executable, hk.__file__, "garbage", str(gw.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        loop = asyncio.get_running_loop()
        during = []
        try:
            line = await loop.run_in_executor(None, attacker.stdout.readline)
            assert line.strip() == "started", line
            # through the first wave of 300, then 3 s of the repeated kinds
            ready = loop.run_in_executor(None, attacker.stdout.readline)
            line = await stream_until(c, ready, "during", during, extra=3.0)
            assert line.strip() == "ready", line
            attacker.stdin.close()
            made = await loop.run_in_executor(None, attacker.stdout.readline)
            attacker.wait(timeout=30)
        finally:
            stop_process(attacker, signal.SIGKILL, 5)
        assert attacker.returncode == 0 and made.startswith("made "), made
        assert int(made.split()[1]) >= 300
        med_b, med_d = statistics.median(base), statistics.median(during)
        assert med_d <= max(20 * med_b, 0.05), \
            f"median latency {med_d * 1000:.2f} ms under garbage vs {med_b * 1000:.2f} ms"
        after = await stream(c, 20, "after")
        assert max(after) < 1.0
        await c.close()
        return rss0, fds0

    rss0, fds0 = run(go(), 240)

    def gauges_zero():
        m = gw.metrics()
        return (metric_value(m, "pushgate_connections", {"transport": "ws"}) == 0 and
                metric_value(m, "pushgate_connections", {"transport": "sse"}) == 0)
    wait_until(gauges_zero, timeout=20, msg="connection gauges back to 0")
    # lws drops the last hostile heads within its 10 s timeout.
    wait_until(lambda: hk.open_fds(gw.pid) <= fds0 + 2, timeout=20,
               msg=f"open fds back near {fds0}")
    rss1 = hk.rss_kb(gw.pid)
    slack = 96 * 1024 if hk.under_asan(gw.pid) else max(16 * 1024, rss0 // 2)
    assert rss1 <= rss0 + slack, f"RSS {rss0} KiB -> {rss1} KiB"
    assert gw.alive() and gw.get("/healthz").status == 200


# --------------------------------------------------------------------------
# Secrets stay out of the logs


def test_no_secret_in_debug_json_logs(gateway_factory, tmp_path):
    secret = "jwt-secret-Zq8vN3"
    api_key = "api-key-Pw7xK2"
    wrong_key = "wrong-api-key-Hs4mJ9"
    gw = gateway_factory(["--jwt-secret", secret, "--api-key", api_key,
                          "--log-format", "json", "--log-level", "debug",
                          "--public-topics", "news"])
    good = mint_hs256(secret, {"sub": "u1", "channels": ["team.*"]})
    bad = mint_hs256("some-other-secret", {"sub": "u2"})
    expired = mint_hs256(secret, {"sub": "u3", "exp": now() - 10})

    async def go():
        c = await ws_connect(gw, f"token={good}&channels=news")
        await c.send_json({"type": "ping"})
        assert await c.recv_json() == {"type": "pong"}
        await c.close()
        s = await sse_connect(gw, headers={"Authorization": f"Bearer {good}"})
        assert s.status == 200
        await s.close()
        assert await ws_handshake_status(gw, f"token={bad}") == 401
        assert await ws_handshake_status(gw, f"token={expired}") == 401
        st, _ = await sse_status(gw, headers={"Authorization": f"Bearer {bad}"})
        assert st == 401
    run(go(), 30)
    assert post(gw, {"channel": "news", "data": 1}, key=api_key).status == 200
    assert post(gw, {"channel": "news", "data": 1}, key=wrong_key).status == 401
    assert post(gw, {"channel": "news", "data": 1},
                headers={"X-Api-Key": api_key}, key=None).status == 401
    assert gw.get("/healthz").status == 200
    gw.stop()

    log = gw.logfile.read_text(errors="replace")
    lines = [l for l in log.splitlines() if l.strip() and not l.startswith("### start")]
    assert len(lines) >= 5, log
    for line in lines:
        json.loads(line)  # --log-format json: every line is one object
    # The refusals were logged, so the lines a leak would be in were written.
    assert sum("refused 401" in l for l in lines) >= 3, log
    # The command line in the "### start" banner is the test's, not the node's.
    for needle in [secret, api_key, wrong_key, good, bad, expired] + \
            [t.split(".")[i] for t in (good, bad, expired) for i in (1, 2)]:
        assert needle not in "\n".join(lines), f"{needle!r} appears in the log"
