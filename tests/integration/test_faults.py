"""Bad input and faults (SPEC §6): tokens, origins, oversized and binary
frames, API errors, connection limit, slow consumers, Redis outages and
restarts, draining on SIGTERM."""

import asyncio
import json
import signal
import socket
import time

import pytest
import websockets

from pgtest import (API_KEY, WSClient, async_wait_until, gen_ec_key, gen_rsa_key,
                    http_request, metric_value, mint_es256, mint_hs256, mint_rs256,
                    render_functions, run, sse_connect, wait_until, ws_connect,
                    ws_handshake_status, b64url, free_port, RedisServer)

SECRET = "s"


async def sse_status(gw, query="", headers=None):
    c = await sse_connect(gw, query, headers)
    try:
        return c.status
    finally:
        await c.close()


def statuses(gw, query="", headers=None):
    """(WebSocket handshake status, SSE status) for one request shape."""
    async def both():
        return (await ws_handshake_status(gw, query, headers),
                await sse_status(gw, query, headers))
    return run(both())


# --------------------------------------------------------------------------
# Tokens


def test_bad_tokens_are_refused_401_before_upgrade_or_stream(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY, "--jwt-secret", SECRET])
    good = mint_hs256(SECRET, {"sub": "1"})
    header, payload, _ = good.split(".")
    bad = {
        "missing": "",
        "garbage": "token=not.a.jwt",
        "expired": "token=" + mint_hs256(SECRET, {"sub": "1", "exp": int(time.time()) - 60}),
        "wrong key": "token=" + mint_hs256("other", {"sub": "1"}),
        "tampered": "token=" + header + "." + b64url(json.dumps({"sub": "2"}).encode())
                    + "." + good.split(".")[2],
        "alg none": "token=" + b64url(b'{"alg":"none","typ":"JWT"}') + "." + payload + ".",
    }
    for what, q in bad.items():
        assert statuses(gw, q) == (401, 401), what
    assert statuses(gw, "token=" + good) == (101, 200)
    assert statuses(gw, "", {"Authorization": "Bearer " + good}) == (101, 200)
    assert statuses(gw, "", {"Authorization": "Bearer nope"}) == (401, 401)


def test_rs256_and_es256_tokens_verify_with_public_key(gateway_factory, tmp_path):
    rsa_key, rsa_pub = gen_rsa_key(tmp_path)
    ec_key, ec_pub = gen_ec_key(tmp_path)
    other_ec, _ = gen_ec_key(tmp_path / "..")
    gw_rsa = gateway_factory(["--jwt-public-key", rsa_pub], name="rsa")
    gw_ec = gateway_factory(["--jwt-public-key", ec_pub], name="ec")

    assert statuses(gw_rsa, "token=" + mint_rs256(rsa_key, {"sub": "1"})) == (101, 200)
    assert statuses(gw_ec, "token=" + mint_es256(ec_key, {"sub": "1"})) == (101, 200)
    assert statuses(gw_ec, "token=" + mint_es256(other_ec, {"sub": "1"})) == (401, 401)
    assert statuses(gw_rsa, "token=" + mint_es256(ec_key, {"sub": "1"})) == (401, 401)
    # Algorithm confusion: HS256 keyed with the public PEM must not pass.
    pem = open(rsa_pub, "rb").read()
    assert statuses(gw_rsa, "token=" + mint_hs256(pem, {"sub": "1"})) == (401, 401)
    assert statuses(gw_rsa, "") == (401, 401)


def test_user_token_delivers_by_sub_for_es256(gateway_factory, rds, tmp_path):
    key, pub = gen_ec_key(tmp_path)
    gw = gateway_factory(["--api-key", API_KEY, "--jwt-public-key", pub])

    async def scenario():
        c = await ws_connect(gw, "token=" + mint_es256(key, {"sub": "u1"}))
        try:
            await async_wait_until(lambda: dict(rds.pubsub_numsub("pushgate:user:u1"))
                                   .get("pushgate:user:u1") == 1, msg="user:u1 subscribed")
            r = gw.publish({"channel": "user:u1", "data": "hi"})
            assert (await c.recv_json()) == {"channel": "user:u1", "id": r.json()["id"],
                                             "data": "hi"}
        finally:
            await c.close()

    run(scenario())


def test_unreadable_key_file_exits_2(tmp_path):
    from pgtest import run_pushgate
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key\n")
    for path in (str(bad), str(tmp_path / "missing.pem")):
        p = run_pushgate(["--listen", f"127.0.0.1:{free_port()}", "--jwt-public-key", path])
        assert p.returncode == 2, (path, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


# --------------------------------------------------------------------------
# Origins


def test_origin_must_match_host_when_no_allowed_origins(gateway_factory):
    gw = gateway_factory([])
    same = {"Origin": f"http://127.0.0.1:{gw.port}"}
    assert statuses(gw, "", same) == (101, 200)
    assert statuses(gw, "") == (101, 200)  # no Origin header: not a browser
    assert statuses(gw, "", {"Origin": "http://evil.example"}) == (403, 403)


def test_allowed_origins_list_and_wildcard(gateway_factory):
    gw = gateway_factory(["--allowed-origins", "https://app.example.com,https://*.example.org"])
    for ok in ("https://app.example.com", "https://a.example.org", "https://b.c.example.org"):
        assert statuses(gw, "", {"Origin": ok}) == (101, 200), ok
    for no in ("https://evil.example", "http://app.example.com", "https://app.example.com.evil",
               "https://example.org.evil.com", f"http://127.0.0.1:{gw.port}"):
        assert statuses(gw, "", {"Origin": no}) == (403, 403), no


def test_star_allows_any_origin(gateway_factory):
    gw = gateway_factory(["--allowed-origins", "*"])
    assert statuses(gw, "", {"Origin": "https://anything.example"}) == (101, 200)


# --------------------------------------------------------------------------
# Frames


def test_ws_frame_over_limit_closes_1009(gateway_factory):
    gw = gateway_factory(["--max-message-bytes", "100"])

    async def scenario():
        c = await ws_connect(gw)
        await c.send_json({"type": "ping", "pad": "x" * 40})
        assert await c.recv_json() == {"type": "pong"}
        await c.send("x" * 200)
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await c.recv(5)
        assert c.close_code == 1009
        await c.close()

    run(scenario())


def test_binary_frame_closes_1003(gateway_factory):
    gw = gateway_factory([])

    async def scenario():
        c = await ws_connect(gw)
        await c.send(b"\x00\x01binary")
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await c.recv(5)
        assert c.close_code == 1003
        await c.close()

    run(scenario())


def test_bad_frames_do_not_disturb_other_clients(gateway_factory, rds):
    gw = gateway_factory(["--max-message-bytes", "100"])

    async def scenario():
        good = await ws_connect(gw)
        bad = [await ws_connect(gw) for _ in range(3)]
        await bad[0].send(b"\xff" * 10)
        await bad[1].send("y" * 1000)
        await bad[2].send("{" * 99)
        rds.publish("pushgate:broadcast", '{"data":"still here"}')
        assert await good.recv_json() == {"channel": "broadcast", "data": "still here"}
        for c in bad + [good]:
            await c.close()

    run(scenario())


# --------------------------------------------------------------------------
# /api/publish errors


def test_api_key_checks(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY])
    body = {"channel": "news", "data": 1}
    assert gw.publish(body, api_key=None).status == 401 if False else True
    r = http_request(gw.port, "POST", "/api/publish", {"Content-Type": "application/json"},
                     body)
    assert r.status == 401, r
    assert gw.publish(body, api_key="wrong").status == 401
    assert gw.publish(body, api_key=API_KEY).status == 200
    r = http_request(gw.port, "POST", "/api/publish", {"Authorization": "Basic dGVzdGtleQ=="},
                     body)
    assert r.status == 401, r


def test_api_answers_403_without_configured_key(gateway_factory):
    gw = gateway_factory([])
    assert gw.publish({"channel": "news", "data": 1}, api_key="anything").status == 403


@pytest.mark.parametrize("body,status", [
    (b"not json", 400),
    (b"[1,2]", 400),
    (b'{"channel":"news"}', 400),
    (b'{"data":1}', 400),
    (b'{"channel":"bad name","data":1}', 400),
    (b'{"channel":"","data":1}', 400),
    (b'{"channel":"' + b"a" * 129 + b'","data":1}', 400),
    (b'{"channel":7,"data":1}', 400),
    (b'{"channel":"news","event":7,"data":1}', 400),
    (b'{"channels":[],"data":1}', 400),
    (b'{"channels":["news","bad name"],"data":1}', 400),
    (b'{"channel":"_internal","data":1}', 400),
])
def test_api_rejects_bad_bodies_with_json_error(gateway_factory, rds, body, status):
    gw = gateway_factory(["--api-key", API_KEY])
    r = http_request(gw.port, "POST", "/api/publish",
                     {"Authorization": f"Bearer {API_KEY}",
                      "Content-Type": "application/json"}, body)
    assert r.status == status, r
    err = r.json()
    assert isinstance(err.get("error"), str) and err["error"], err
    assert rds.keys("pushgate:history:*") == [], "nothing may be published"


def test_api_body_over_limit_is_413(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY, "--max-message-bytes", "1000"])
    r = gw.publish({"channel": "news", "data": "x" * 2000})
    assert r.status == 413, r
    assert gw.publish({"channel": "news", "data": "x" * 100}).status == 200


def test_unknown_path_404_and_wrong_method_405_before_key(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY])
    assert http_request(gw.port, "GET", "/nope").status == 404
    assert http_request(gw.port, "GET", "/api/nope",
                        {"Authorization": f"Bearer {API_KEY}"}).status == 404
    assert http_request(gw.port, "GET", "/api/publish").status == 405
    assert http_request(gw.port, "PUT", "/api/publish", body=b"{}").status == 405
    assert http_request(gw.port, "POST", "/healthz", body=b"").status == 405


def test_publish_metrics_count_by_code(gateway_factory):
    gw = gateway_factory(["--api-key", API_KEY])
    gw.publish({"channel": "news", "data": 1})
    gw.publish({"channel": "news", "data": 1})
    gw.publish({"channel": "news"})
    gw.publish({"channel": "news", "data": 1}, api_key="bad")
    text = gw.metrics()
    assert metric_value(text, "pushgate_publish_requests_total", {"code": "200"}) == 2
    assert metric_value(text, "pushgate_publish_requests_total", {"code": "400"}) == 1
    assert metric_value(text, "pushgate_publish_requests_total", {"code": "401"}) == 1


# --------------------------------------------------------------------------
# Connection limit


def test_connections_beyond_max_get_503(gateway_factory):
    gw = gateway_factory(["--max-connections", "2"])

    async def scenario():
        a = await ws_connect(gw)
        b = await sse_connect(gw)
        assert b.status == 200
        assert await ws_handshake_status(gw) == 503
        assert await sse_status(gw) == 503
        await a.close()
        await async_wait_until(lambda: ws_handshake_status(gw), timeout=5,
                               msg="a slot free again")
        assert await ws_handshake_status(gw) == 101
        await b.close()
        assert gw.get("/healthz").status == 200

    run(scenario())


# --------------------------------------------------------------------------
# Slow consumers


def test_slow_consumer_is_dropped_alone(gateway_factory, rds):
    gw = gateway_factory(["--queue-limit-bytes", "65536"])
    chunk = "x" * 32768

    async def scenario():
        # The slow one: a small receive buffer and a client that stops reading.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", gw.port))
        slow = WSClient(await websockets.connect(
            gw.ws_url(), sock=s, max_size=None, max_queue=1, read_limit=4096,
            ping_interval=None, close_timeout=2))
        fast = await ws_connect(gw)
        try:
            got = 0
            for i in range(300):
                rds.publish("pushgate:broadcast", json.dumps({"data": {"i": i, "pad": chunk}}))
                msg = await fast.recv_json(5)
                assert msg["data"]["i"] == i
                got += 1
                if metric_value(gw.metrics(), "pushgate_slow_consumer_disconnects_total") == 1:
                    break
            assert metric_value(gw.metrics(), "pushgate_slow_consumer_disconnects_total") == 1
            # Everyone else keeps receiving.
            rds.publish("pushgate:broadcast", json.dumps({"event": "FIN", "data": None}))
            msg = await fast.recv_json(5)
            assert msg["event"] == "FIN"
            # The slow client finds a 1008 close after what it had buffered.
            with pytest.raises(websockets.exceptions.ConnectionClosed):
                while True:
                    await slow.recv(5)
            assert slow.close_code == 1008, (slow.close_code, slow.close_reason)
        finally:
            await slow.close()
            await fast.close()

    run(scenario(), timeout=120)


# --------------------------------------------------------------------------
# Redis outages


def test_redis_down_at_start_then_up(gateway_factory, tmp_path):
    srv = RedisServer(tmp_path / "late-redis")
    srv.port = free_port()
    gw = gateway_factory(["--api-key", API_KEY], ready=False,
                         redis_url=f"redis://127.0.0.1:{srv.port}/0")
    try:
        assert gw.get("/healthz").status == 200
        assert gw.readyz() == 503
        assert gw.publish({"channel": "news", "data": 1}).status == 503
        assert run(ws_handshake_status(gw)) == 101, "the node keeps serving connections"
        srv.start(srv.port)
        wait_until(lambda: gw.readyz() == 200, timeout=15, msg="ready after Redis came up")
        assert gw.publish({"channel": "news", "data": 1}).status == 200
        assert metric_value(gw.metrics(), "pushgate_redis_connected") == 1
    finally:
        gw.stop()
        srv.stop()


def test_redis_restart_resubscribes_and_replays(gateway_factory, redis_server):
    gw = gateway_factory(["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous",
                          "--public-topics", "news"])
    tok = mint_hs256(SECRET, {"sub": "42"})

    async def scenario():
        c = await ws_connect(gw, "channels=news&token=" + tok)
        sse = await sse_connect(gw, "channels=news")
        try:
            r = redis_server.client()
            await async_wait_until(lambda: dict(r.pubsub_numsub("pushgate:user:42"))
                                   .get("pushgate:user:42") == 1, msg="subscribed")
            first = gw.publish({"channel": "news", "data": "before"}).json()["id"]
            assert (await c.recv_json())["id"] == first
            assert (await sse.next_json())[1]["id"] == first

            redis_server.kill9()
            await async_wait_until(lambda: gw.readyz() == 503, timeout=10,
                                   msg="node notices Redis is gone")
            assert gw.publish({"channel": "news", "data": "x"}).status == 503
            redis_server.start(redis_server.port)
            # Published while the node is still reconnecting: recovered from
            # history (or delivered live if the node was quicker).
            r = redis_server.client()
            r.execute_command("FUNCTION", "LOAD", "REPLACE", render_functions())
            missed = [r.execute_command("FCALL", "pushgate_publish", 0, ch,
                                        json.dumps({"data": ch}))
                      for ch in ("news", "user:42")]
            await async_wait_until(lambda: gw.readyz() == 200, timeout=15,
                                   msg="node ready again")
            assert metric_value(gw.metrics(), "pushgate_redis_reconnects_total") >= 1
            # Live again, on every channel the node needs.
            fin = gw.publish({"channel": "news", "event": "FIN", "data": None}).json()["id"]
            got = []
            while True:
                m = await c.recv_json(10)
                got.append(m)
                if m.get("event") == "FIN":
                    break
            assert [(m["channel"], m.get("id")) for m in got] == \
                [("news", missed[0]), ("user:42", missed[1]), ("news", fin)]
            ev, m = await sse.next_json(10)
            assert m["id"] == missed[0]
            ev, m = await sse.next_json(10)
            assert m["id"] == fin
        finally:
            await c.close()
            await sse.close()

    run(scenario(), timeout=90)


# --------------------------------------------------------------------------
# Draining


def test_drain_on_sigterm_closes_1001_and_ends_sse_with_retry(gateway_factory):
    gw = gateway_factory(["--drain-timeout", "5"])

    async def scenario():
        ws = await ws_connect(gw)
        sse = await sse_connect(gw)
        assert sse.status == 200
        import os
        os.kill(gw.pid, signal.SIGTERM)
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await ws.recv(8)
        assert ws.close_code == 1001
        events = []
        while True:
            ev = await sse.next_event(8)
            if ev is None:
                break
            events.append(ev)
        assert any("retry" in ev for ev in events), events
        await ws.close()
        await sse.close()

    run(scenario())
    assert gw.stop(timeout=10) == 0
