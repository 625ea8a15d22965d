"""The backend controls its users (SPEC §7, as /work/briefs/design.md pins it
down), end to end: two nodes on one Redis, a user with WebSocket and SSE
connections on both, orders given by FCALL and by POST /api/*.

What a user sees is asserted: close codes and reasons, `pushgate.*` SSE
events and the end of the stream, 401/429 on connect, `subscribed` /
`unsubscribed` / `expiring` / `refreshed` / `error` frames. "Nothing else
arrived" is proven with a FIN sentinel published afterwards on broadcast:
it must be the next message. Waits poll a readiness signal (PUBSUB NUMSUB, a
metric, the Redis clock); only the token-lifetime tests let time pass on
purpose, because time passing is what they test."""

import asyncio
import json
import os
import signal
import time

import pytest
import redis as redis_py

from pgtest import (API_KEY, WSClient, api_request, async_wait_until, gen_ec_key,
                    gen_rsa_key, http_request, jwk, metric_value, mint_es256, mint_hs256,
                    mint_rs256, run, sse_connect, ws_connect, ws_handshake_status)
from test_core import (close_all, expect_fin_next, next_delivery, numsub,
                       open_client, publish_fin, wait_subscribed)

SECRET = "s"
PREFIX = "pushgate:"
ARGS = ["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous"]
CONTROL = PREFIX + "_control"
REVOKED = PREFIX + "revoked"
ROUTE_KEY = PREFIX + "{_control}:revoked"
ENDPOINTS = ("/api/disconnect", "/api/subscribe", "/api/unsubscribe")


def token(sub, secret=SECRET, **claims):
    """An HS256 token for sub; exp one hour ahead unless given."""
    claims["sub"] = sub
    return mint_hs256(secret, claims, exp_in=None if "exp" in claims else 3600)


def redis_now(rds):
    """The unix second of Redis TIME (the clock revocations use)."""
    return int(rds.time()[0])


def two_nodes(gateway_factory, args=ARGS):
    return (gateway_factory(args, name="node1"), gateway_factory(args, name="node2"))


# --------------------------------------------------------------------------
# Orders: FCALL (zero-key or one-key form) or POST /api/*


def fcall_args(fn, body):
    """The FCALL arguments of the order an /api/<fn> body describes."""
    if fn == "disconnect":
        opts = {k: v for k, v in body.items() if k != "user"}
        return [body["user"]] + ([json.dumps(opts, ensure_ascii=False)] if opts else [])
    if fn == "subscribe":
        return [body["user"], body["channel"]] + ([body["since"]] if "since" in body else [])
    return [body["user"], body["channel"]]


def order(how, gw, rds, fn, body):
    """Give one order; return N, the nodes that received it. how: "fcall"
    (zero-key form), "fcall1" (one-key form) or "api"."""
    if how == "api":
        r = gw.api("/api/" + fn, body)
        assert r.status == 200, r
        assert r.headers.get("content-type", "").startswith("application/json"), r
        got = r.json()
        assert set(got) == {"nodes"} and isinstance(got["nodes"], int), got
        return got["nodes"]
    keys = [0] if how == "fcall" else [1, ROUTE_KEY]
    n = rds.execute_command("FCALL", gw.fn + fn, *keys, *fcall_args(fn, body))
    assert isinstance(n, int), n
    return n


# --------------------------------------------------------------------------
# What clients see


async def open_user(sub, nodes, tok=None, query=""):
    """One WebSocket and one SSE connection of sub on each node."""
    tok = tok or token(sub)
    q = f"token={tok}" + (f"&{query}" if query else "")
    out = []
    try:
        for gw in nodes:
            out.append(await open_client("ws", gw, q))
            out.append(await open_client("sse", gw, q))
    except BaseException:
        await close_all(*out)
        raise
    return out


async def expect_closed(c, code, reason, timeout=5.0):
    """WebSocket: the close frame carries code and reason. SSE: the last
    data event is pushgate.disconnect {"code","reason"}, then the stream
    ends (and nothing else came before it)."""
    if isinstance(c, WSClient):
        got = await c.wait_closed(timeout)
        assert got == (code, reason), f"WebSocket closed with {got}, want {(code, reason)}"
        return
    events = [e for e in await c.events_until_end(timeout) if "data" in e]
    assert [e.get("event") for e in events] == ["pushgate.disconnect"], events
    assert json.loads(events[0]["data"]) == {"code": code, "reason": reason}, events


async def expect_notice(c, msg, timeout=5.0):
    """The next message is the control frame msg (SSE: event
    pushgate.<type> with msg as its data)."""
    ev, got = await next_delivery(c, timeout)
    assert got == msg, f"got {got}, want {msg}"
    if ev is not None:
        assert ev.get("event") == "pushgate." + msg["type"], ev


async def ws_refusal(gw, query):
    """A WebSocket upgrade request that must be refused: the Response."""
    hdrs = {"Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: http_request(gw.port, "GET", "/ws?" + query, hdrs))


async def sse_status(gw, query):
    """(status, body) of an SSE request; the stream is closed again."""
    c = await sse_connect(gw, query)
    try:
        body = b"" if c.status == 200 else await c.read_all(2)
        return c.status, body
    finally:
        await c.close()


async def expect_refused(gw, tok, status, error):
    """Both transports refuse tok with status and {"error": error}."""
    r = await ws_refusal(gw, "token=" + tok)
    assert r.status == status, r
    assert r.json() == {"error": error}, r
    st, body = await sse_status(gw, "token=" + tok)
    assert st == status, (st, body)
    assert json.loads(body) == {"error": error}, body


async def expect_accepted(gw, tok):
    assert await ws_handshake_status(gw, "token=" + tok) == 101
    st, body = await sse_status(gw, "token=" + tok)
    assert st == 200, (st, body)


async def still_delivers(gw, sub, clients, data):
    """A publish to user:<sub> reaches every one of clients, next."""
    r = gw.publish({"channel": f"user:{sub}", "data": data})
    assert r.status == 200, r
    for c in clients:
        _, msg = await next_delivery(c)
        assert msg == {"channel": f"user:{sub}", "id": r.json()["id"], "data": data}


# --------------------------------------------------------------------------
# Disconnect


DISCONNECT_CASES = [
    pytest.param("fcall", {}, 4000, "disconnected", id="fcall-no-options"),
    pytest.param("fcall", {"reason": "bye now"}, 4000, "bye now", id="fcall-reason"),
    pytest.param("fcall1", {"reason": "bye", "reconnect": False}, 4003, "bye",
                 id="fcall-one-key-no-reconnect"),
    pytest.param("api", {}, 4000, "disconnected", id="api-no-options"),
    pytest.param("api", {"reason": "bye now", "reconnect": True}, 4000, "bye now",
                 id="api-reason"),
    pytest.param("api", {"reconnect": False}, 4003, "disconnected", id="api-no-reconnect"),
    # 121 bytes: cut to at most 100 at a character boundary
    pytest.param("api", {"reason": "x" + "é" * 60}, 4000, "x" + "é" * 49,
                 id="api-long-reason-cut"),
]


@pytest.mark.parametrize("how,options,code,reason", DISCONNECT_CASES)
def test_disconnect_closes_every_connection_of_the_user_on_both_nodes_only(
        gateway_factory, rds, how, options, code, reason):
    gw1, gw2 = two_nodes(gateway_factory)

    async def scenario():
        mine = others = []
        try:
            mine = await open_user("42", (gw1, gw2))
            others = await open_user("43", (gw1, gw2))
            await wait_subscribed(rds, PREFIX + "user:42", nodes=2)
            await wait_subscribed(rds, PREFIX + "user:43", nodes=2)
            assert order(how, gw1, rds, "disconnect", {"user": "42", **options}) == 2
            for c in mine:
                await expect_closed(c, code, reason)
            # another user's connections are untouched: nothing arrived, and
            # they still receive
            await publish_fin(rds)
            for c in others:
                await expect_fin_next(c)
            await still_delivers(gw2, "43", others, "still here")
            # without revoke the same token connects again
            await expect_accepted(gw1, token("42"))
            await expect_accepted(gw2, token("42"))
        finally:
            await close_all(*mine, *others)

    run(scenario())


# --------------------------------------------------------------------------
# Revoke


@pytest.mark.parametrize("how", ["fcall", "api"])
def test_revoke_closes_4003_on_both_nodes_and_refuses_tokens_issued_before_it(
        gateway_factory, rds, how):
    gw1, gw2 = two_nodes(gateway_factory)
    issued = redis_now(rds)
    old = token("42", iat=issued)
    no_iat = token("42")
    other = token("43", iat=issued)

    async def scenario():
        mine = others = []
        fresh_ws = None
        try:
            mine = await open_user("42", (gw1, gw2), old)
            others = await open_user("43", (gw1, gw2), other)
            await wait_subscribed(rds, PREFIX + "user:42", nodes=2)
            await wait_subscribed(rds, PREFIX + "user:43", nodes=2)
            body = {"user": "42", "revoke": True, "reason": "account closed"}
            assert order(how, gw2, rds, "disconnect", body) == 2
            for c in mine:
                await expect_closed(c, 4003, "account closed")
            revoked_at = int(rds.hget(REVOKED, "42"))
            assert issued <= revoked_at <= redis_now(rds)
            assert 0 < rds.ttl(REVOKED) <= 86400

            # tokens issued at or before the revocation's second, or without
            # iat, are refused on both nodes, WebSocket and SSE
            for gw in (gw1, gw2):
                for tok in (old, no_iat):
                    await expect_refused(gw, tok, 401, "token revoked")
            # another user is not revoked
            await publish_fin(rds)
            for c in others:
                await expect_fin_next(c)
            await still_delivers(gw1, "43", others, "not me")
            await expect_accepted(gw2, other)

            # a token issued after that second is accepted
            await async_wait_until(lambda: redis_now(rds) > revoked_at, 3,
                                   msg="the second after the revocation")
            fresh = token("42", iat=redis_now(rds))
            for gw in (gw1, gw2):
                await expect_accepted(gw, fresh)
            # ... and cannot be swapped for the revoked one
            fresh_ws = await ws_connect(gw2, "token=" + fresh)
            await fresh_ws.send_json({"type": "refresh", "token": old})
            err = await fresh_ws.recv_json()
            assert err.get("type") == "error" and err.get("code") == "bad_token", err
            await still_delivers(gw2, "42", [fresh_ws], "fresh")

            # a node started after the revocation loads it from Redis
            gw3 = gateway_factory(ARGS, name="node3")
            await expect_refused(gw3, old, 401, "token revoked")
            await expect_refused(gw3, no_iat, 401, "token revoked")
            await expect_accepted(gw3, fresh)
        finally:
            await close_all(*mine, *others, fresh_ws)

    run(scenario())


def test_revocation_lapses_after_revoke_ttl_on_both_nodes(gateway_factory, rds):
    gw1, gw2 = two_nodes(gateway_factory, ARGS + ["--revoke-ttl", "2"])
    old = token("42", iat=redis_now(rds))

    async def scenario():
        n = rds.execute_command("FCALL", "pushgate_disconnect", 0, "42", '{"revoke":true}')
        assert n == 2
        revoked_at = int(rds.hget(REVOKED, "42"))
        assert 0 < rds.ttl(REVOKED) <= 2
        for gw in (gw1, gw2):
            r = await ws_refusal(gw, "token=" + old)
            assert r.status == 401, r

        async def accepted_everywhere():
            for gw in (gw1, gw2):
                if await ws_handshake_status(gw, "token=" + old) != 101:
                    return False
            return True

        await async_wait_until(accepted_everywhere, 6, interval=0.05,
                               msg="the revocation lapsed on both nodes")
        lapsed = time.time()
        assert lapsed >= revoked_at + 2 - 0.1, \
            f"accepted {revoked_at + 2 - lapsed:.2f}s before revoked_at + revoke-ttl"
        assert lapsed <= revoked_at + 2 + 2, "the revocation outlived revoke-ttl by far"
        st, body = await sse_status(gw2, "token=" + old)
        assert st == 200, (st, body)

    run(scenario())


# --------------------------------------------------------------------------
# Server-side subscribe / unsubscribe


@pytest.mark.parametrize("how", ["fcall", "api"])
def test_server_subscribe_announces_recovers_since_then_live_and_unsubscribe_stops_it(
        gateway_factory, rds, how):
    """room.7 is allowed by no token and no --public-topics: the backend's
    subscribe needs no permission."""
    gw1, gw2 = two_nodes(gateway_factory)
    ids = [gw1.publish({"channel": "room.7", "data": i}).json()["id"] for i in range(3)]

    async def scenario():
        mine = others = []
        try:
            mine = await open_user("42", (gw1, gw2))
            others = await open_user("43", (gw1, gw2))
            await wait_subscribed(rds, PREFIX + "user:42", nodes=2)
            await wait_subscribed(rds, PREFIX + "user:43", nodes=2)

            body = {"user": "42", "channel": "room.7", "since": ids[0]}
            assert order(how, gw1, rds, "subscribe", body) == 2
            # published while the nodes subscribe and read history: the seam
            live = [rds.execute_command("FCALL", "pushgate_publish", 0, "room.7",
                                        json.dumps({"data": "live0"}))]
            await wait_subscribed(rds, PREFIX + "room.7", nodes=2)
            r = gw2.publish({"channel": "room.7", "data": "live1"})
            assert r.status == 200, r
            live.append(r.json()["id"])
            want = [{"channel": "room.7", "id": i, "data": d}
                    for i, d in zip(ids[1:] + live, [1, 2, "live0", "live1"])]
            await publish_fin(rds)
            for c in mine:
                await expect_notice(c, {"type": "subscribed", "channel": "room.7"})
                got = [(await next_delivery(c))[1] for _ in want]
                assert got == want
                await expect_fin_next(c)
            for c in others:
                await expect_fin_next(c)

            # subscribing another user does not touch this one
            assert order(how, gw2, rds, "subscribe", {"user": "43", "channel": "room.9"}) == 2
            for c in others:
                await expect_notice(c, {"type": "subscribed", "channel": "room.9"})
            await wait_subscribed(rds, PREFIX + "room.9", nodes=2)
            r = gw1.publish({"channel": "room.9", "data": "for 43"})
            await publish_fin(rds)
            for c in others:
                _, msg = await next_delivery(c)
                assert msg == {"channel": "room.9", "id": r.json()["id"], "data": "for 43"}
                await expect_fin_next(c)
            for c in mine:
                await expect_fin_next(c)

            # unsubscribe: announced, and room.7 delivers no more
            body = {"user": "42", "channel": "room.7"}
            assert order(how, gw2, rds, "unsubscribe", body) == 2
            for c in mine:
                await expect_notice(c, {"type": "unsubscribed", "channel": "room.7"})
            await async_wait_until(lambda: numsub(rds, PREFIX + "room.7") == 0,
                                   msg="room.7 left on both nodes")
            assert gw1.publish({"channel": "room.7", "data": "gone"}).status == 200
            rds.publish(PREFIX + "room.7", json.dumps({"data": "gone too"}))
            await publish_fin(rds)
            for c in mine + others:
                await expect_fin_next(c)
        finally:
            await close_all(*mine, *others)

    run(scenario())


def test_server_subscribe_is_announced_even_when_subscribed_and_unsubscribe_is_silent_when_not(
        gateway_factory, rds):
    """Announced even if already subscribed; nothing is sent for a channel
    the connection does not have; broadcast and the user's own channel are
    never left."""
    gw1, gw2 = two_nodes(gateway_factory, ARGS + ["--public-topics", "news"])

    async def scenario():
        mine = []
        try:
            mine = await open_user("42", (gw1, gw2), query="channels=news")
            await wait_subscribed(rds, PREFIX + "news", nodes=2)
            await wait_subscribed(rds, PREFIX + "user:42", nodes=2)
            assert order("fcall", gw1, rds, "subscribe", {"user": "42", "channel": "news"}) == 2
            for c in mine:
                await expect_notice(c, {"type": "subscribed", "channel": "news"})
            for ch in ("room.8", "broadcast", "user:42"):
                assert order("fcall", gw1, rds, "unsubscribe", {"user": "42", "channel": ch}) == 2
            r1 = gw1.publish({"channel": "news", "data": "n"})
            r2 = gw2.publish({"channel": "user:42", "data": "u"})
            await publish_fin(rds)
            for c in mine:
                for r, ch, d in ((r1, "news", "n"), (r2, "user:42", "u")):
                    _, msg = await next_delivery(c)
                    assert msg == {"channel": ch, "id": r.json()["id"], "data": d}
                await expect_fin_next(c)
        finally:
            await close_all(*mine)

    run(scenario())


# --------------------------------------------------------------------------
# Token lifetime


def test_expiring_then_refresh_keeps_the_connection_past_the_old_exp(gateway_factory, rds):
    gw = gateway_factory(ARGS + ["--token-refresh-window", "2"])
    exp = int(time.time()) + 4

    async def scenario():
        c = await ws_connect(gw, "token=" + token("42", exp=exp))
        try:
            msg = await c.recv_json(6)
            at = time.time()
            assert msg == {"type": "expiring", "exp": exp}
            assert exp - 2 - 0.2 <= at <= exp - 2 + 1.0, \
                f"expiring {exp - at:.2f}s before exp with a 2 s window"
            exp2 = int(time.time()) + 3600
            await c.send_json({"type": "refresh", "token": token("42", exp=exp2)})
            assert await c.recv_json() == {"type": "refreshed", "exp": exp2}
            # time passing past the old exp is the point here
            await asyncio.sleep(max(0.0, exp + 1.5 - time.time()))
            await c.send_json({"type": "ping"})
            assert await c.recv_json() == {"type": "pong"}
            await still_delivers(gw, "42", [c], "after the old exp")
            # a token without exp: refreshed without "exp"
            no_exp = mint_hs256(SECRET, {"sub": "42"}, exp_in=None)
            await c.send_json({"type": "refresh", "token": no_exp})
            assert await c.recv_json() == {"type": "refreshed"}
        finally:
            await c.close()

    run(scenario())


def test_refresh_with_narrower_channels_leaves_only_the_lost_topic_forbidden(
        gateway_factory, rds):
    """The new token's channels claim replaces the old: a subscribed topic
    it no longer allows is left with reason forbidden; public topics and a
    topic the backend granted stay."""
    gw = gateway_factory(ARGS + ["--public-topics", "pub"])
    tok1 = token("42", channels=["a", "b.*"])

    async def scenario():
        c = await ws_connect(gw, f"channels=a,b.1,pub&token={tok1}")
        try:
            assert order("fcall", gw, rds, "subscribe", {"user": "42", "channel": "g"}) == 1
            assert await c.recv_json() == {"type": "subscribed", "channel": "g"}
            for ch in ("a", "b.1", "pub", "g"):
                await wait_subscribed(rds, PREFIX + ch)
            exp2 = int(time.time()) + 3600
            await c.send_json({"type": "refresh",
                               "token": token("42", channels=["a"], exp=exp2)})
            got = [await c.recv_json(), await c.recv_json()]
            want = [{"type": "unsubscribed", "channel": "b.1", "reason": "forbidden"},
                    {"type": "refreshed", "exp": exp2}]
            assert sorted(got, key=json.dumps) == sorted(want, key=json.dumps), got
            ids = {}
            for ch in ("a", "b.1", "pub", "g"):
                r = gw.publish({"channel": ch, "data": ch})
                assert r.status == 200, r
                ids[ch] = r.json()["id"]
            await publish_fin(rds)
            for ch in ("a", "pub", "g"):
                assert await c.recv_json() == {"channel": ch, "id": ids[ch], "data": ch}
            await expect_fin_next(c)
            # and b.* may no longer be subscribed by the client itself
            await c.send_json({"type": "subscribe", "channel": "b.2"})
            err = await c.recv_json()
            assert err.get("type") == "error", err
        finally:
            await c.close()

    run(scenario())


def test_refresh_with_bad_or_foreign_token_is_an_error_and_the_old_exp_closes_4001(
        gateway_factory, rds):
    gw = gateway_factory(ARGS + ["--token-refresh-window", "2"])
    exp = int(time.time()) + 5

    async def scenario():
        c = await ws_connect(gw, "token=" + token("42", exp=exp))
        try:
            await wait_subscribed(rds, PREFIX + "user:42")
            tries = [("garbage", "bad_token"),
                     (token("42", exp=int(time.time()) - 10), "bad_token"),
                     (token("42", secret="not the secret"), "bad_token"),
                     (token("43"), "wrong_user")]
            got = []
            for tok, code in tries:
                await c.send_json({"type": "refresh", "token": tok})
                msg, skipped = await c.recv_until(lambda m: m.get("type") != "expiring")
                got += skipped
                assert msg.get("type") == "error" and msg.get("code") == code, (tok, msg)
                assert isinstance(msg.get("message"), str) and msg["message"], msg
            # the connection keeps working with its old token
            await c.send_json({"type": "ping"})
            msg, skipped = await c.recv_until(lambda m: m.get("type") != "expiring")
            got += skipped
            assert msg == {"type": "pong"}
            r = gw.publish({"channel": "user:42", "data": "still"})
            msg, skipped = await c.recv_until(lambda m: m.get("type") != "expiring")
            got += skipped
            assert msg == {"channel": "user:42", "id": r.json()["id"], "data": "still"}
            # ... until the old exp
            while not got:
                got.append(await c.recv_json(exp - time.time() + 2))
            assert got == [{"type": "expiring", "exp": exp}]
            code = await c.wait_closed(exp - time.time() + 3)
            at = time.time()
            assert code == (4001, "token expired")
            assert at >= exp - 0.25, f"closed {exp - at:.2f}s before exp"
            assert at <= exp + 2.5, f"closed {at - exp:.2f}s after exp"
        finally:
            await c.close()

    run(scenario())


def test_ws_inside_the_refresh_window_gets_expiring_at_once_and_4001_at_exp(
        gateway_factory, rds):
    """Default window (30 s): a token expiring in 3 s is inside it."""
    gw = gateway_factory(ARGS)
    exp = int(time.time()) + 3

    async def scenario():
        t0 = time.time()
        c = await ws_connect(gw, "token=" + token("42", exp=exp))
        try:
            assert await c.recv_json(2) == {"type": "expiring", "exp": exp}
            assert time.time() - t0 < 1.5, "expiring did not come at once"
            await wait_subscribed(rds, PREFIX + "user:42")
            await still_delivers(gw, "42", [c], "before exp")
            code = await c.wait_closed(exp - time.time() + 3)
            at = time.time()
            assert code == (4001, "token expired")
            assert exp - 0.25 <= at <= exp + 2.5, f"closed {at - exp:+.2f}s from exp"
        finally:
            await c.close()

    run(scenario())


def test_sse_gets_expiring_then_disconnect_4001_and_its_token_is_refused(gateway_factory):
    gw = gateway_factory(ARGS + ["--token-refresh-window", "2"])
    exp = int(time.time()) + 4
    tok = token("42", exp=exp)

    async def scenario():
        s = await open_client("sse", gw, "token=" + tok)
        try:
            await expect_notice(s, {"type": "expiring", "exp": exp}, timeout=6)
            at = time.time()
            assert exp - 2 - 0.2 <= at <= exp - 2 + 1.0, \
                f"expiring {exp - at:.2f}s before exp with a 2 s window"
            await expect_closed(s, 4001, "token expired", timeout=exp - time.time() + 3)
            at = time.time()
            assert exp - 0.25 <= at <= exp + 2.5, f"ended {at - exp:+.2f}s from exp"
        finally:
            await s.close()
        # the browser's automatic reconnect carries the same token: 401
        st, body = await sse_status(gw, "token=" + tok)
        assert st == 401, (st, body)

    run(scenario())


# --------------------------------------------------------------------------
# --max-connections-per-user


def test_max_connections_per_user_refuses_the_extra_one_per_node(gateway_factory, rds):
    gw1, gw2 = two_nodes(gateway_factory, ARGS + ["--max-connections-per-user", "2"])
    q = "token=" + token("42")

    async def extra_ws_closed_4029(gw):
        c = await ws_connect(gw, q)   # upgraded ...
        try:
            assert await c.wait_closed(3) == (4029, "too many connections")  # ... then closed
        finally:
            await c.close()

    async def opens(gw, transport, query=q):
        """A connection that stays open (answers a ping / streams)."""
        c = await open_client(transport, gw, query)
        if transport == "ws":
            await c.send_json({"type": "ping"})
            assert await c.recv_json(2) == {"type": "pong"}
        return c

    async def scenario():
        held = []
        try:
            held += [await opens(gw1, "ws"), await opens(gw1, "sse")]
            await extra_ws_closed_4029(gw1)
            st, body = await sse_status(gw1, q)
            assert st == 429, (st, body)
            assert json.loads(body) == {"error": "too many connections for this user"}
            # the cap is per node, and per user
            held += [await opens(gw2, "sse"), await opens(gw2, "ws")]
            held += [await opens(gw1, "ws", "token=" + token("43")),
                     await opens(gw1, "sse", "token=" + token("43"))]
            # anonymous connections are not capped
            for _ in range(4):
                held.append(await opens(gw1, "ws", ""))
            held.append(await opens(gw1, "sse", ""))
            # the refusals touched no one
            await wait_subscribed(rds, PREFIX + "user:42", nodes=2)
            await still_delivers(gw1, "42", held[:4], "all four")

            # closing one frees its slot
            first = held.pop(0)
            await first.close()

            async def ws_admitted():
                c = await opens(gw1, "ws")
                held.append(c)
                return True
            await async_wait_until(ws_admitted, 5, interval=0.1,
                                   msg="a WebSocket admitted after one closed")
            await extra_ws_closed_4029(gw1)
        finally:
            await close_all(*held)

    run(scenario())


# --------------------------------------------------------------------------
# Keys rotate without refusals


def key_reloads(gw, result):
    return metric_value(gw.metrics(), "pushgate_key_reloads_total", {"result": result}) or 0


async def sighup(gw, result="ok"):
    """SIGHUP the node and wait until it has counted the reload as result;
    returns the log text written meanwhile."""
    before = key_reloads(gw, result)
    log_at = len(gw.log())
    os.kill(gw.pid, signal.SIGHUP)
    await async_wait_until(lambda: key_reloads(gw, result) > before,
                           msg=f'pushgate_key_reloads_total{{result="{result}"}} to rise')
    return gw.log()[log_at:]


def write_atomically(path, text):
    """Replace path at once, as a secret mount does."""
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


async def ws_status(gw, tok):
    return await ws_handshake_status(gw, "token=" + tok)


def test_jwt_secret_and_api_key_lists_accept_every_key(gateway_factory):
    gw = gateway_factory(["--api-key", "k1,k2", "--jwt-secret", "a,b"])

    async def scenario():
        for sec in ("a", "b"):
            await expect_accepted(gw, token("42", secret=sec))
        for sec in ("c", "a,b"):
            assert await ws_status(gw, token("42", secret=sec)) == 401
        for k in ("k1", "k2"):
            assert gw.publish({"channel": "news", "data": 1}, api_key=k).status == 200
            r = gw.api("/api/disconnect", {"user": "42"}, api_key=k)
            assert (r.status, r.json()) == (200, {"nodes": 1}), r
        for k in ("k3", "k1,k2", ""):
            assert gw.publish({"channel": "news", "data": 1}, api_key=k).status == 401
            assert gw.api("/api/subscribe", {"user": "42", "channel": "x"},
                          api_key=k).status == 401

    run(scenario())


def test_key_files_skip_comments_and_blank_lines_and_sighup_rotates_them(
        gateway_factory, tmp_path):
    secrets = tmp_path / "jwt-secrets"
    keys = tmp_path / "api-keys"
    secrets.write_text("# rotated by the operator\n\nsecA\nsecB\n")
    keys.write_text("# api keys\nk1\n\nk2\n")
    gw = gateway_factory(["--jwt-secret-file", str(secrets), "--api-key-file", str(keys)])

    def api_ok(k):
        return gw.publish({"channel": "news", "data": 1}, api_key=k).status == 200

    async def scenario():
        for sec in ("secA", "secB"):
            await expect_accepted(gw, token("42", secret=sec))
        for sec in ("# rotated by the operator", "", "secC"):
            assert await ws_status(gw, token("42", secret=sec)) == 401
        assert api_ok("k1") and api_ok("k2")
        assert not api_ok("# api keys") and not api_ok("k3")

        write_atomically(secrets, "secB\nsecC\n")
        write_atomically(keys, "k2\nk3\n")
        await sighup(gw)
        assert await ws_status(gw, token("42", secret="secA")) == 401
        for sec in ("secB", "secC"):
            await expect_accepted(gw, token("42", secret=sec))
        assert not api_ok("k1")
        assert api_ok("k2") and api_ok("k3")

    run(scenario())


def test_jwks_file_rotates_on_sighup_and_a_bad_file_keeps_the_old_keys(
        gateway_factory, tmp_path):
    rsa_key, _ = gen_rsa_key(tmp_path, "r1.pem")
    ec_key, _ = gen_ec_key(tmp_path, "e2.pem")
    jwks = tmp_path / "jwks.json"

    def write_jwks(*entries):
        write_atomically(jwks, json.dumps({"keys": list(entries)}, indent=1))

    write_jwks(jwk(rsa_key, "r1"))
    gw = gateway_factory(["--api-key", API_KEY, "--jwt-public-key", str(jwks)])
    old = mint_rs256(rsa_key, {"sub": "42"}, kid="r1")
    new = mint_es256(ec_key, {"sub": "42"}, kid="e2")

    async def scenario():
        await expect_accepted(gw, old)
        assert await ws_status(gw, new) == 401
        write_jwks(jwk(rsa_key, "r1"), jwk(ec_key, "e2"))
        await sighup(gw)
        await expect_accepted(gw, old)
        await expect_accepted(gw, new)
        write_jwks(jwk(ec_key, "e2"))
        await sighup(gw)
        assert await ws_status(gw, old) == 401
        await expect_accepted(gw, new)

        ok_before = key_reloads(gw, "ok")
        write_atomically(jwks, '{"keys": [ {"kty": "RSA", "kid": "broken"')
        logged = await sighup(gw, "failed")
        assert key_reloads(gw, "ok") == ok_before
        assert jwks.name in logged, f"the failed reload does not say which file:\n{logged}"
        await expect_accepted(gw, new)
        assert await ws_status(gw, old) == 401
        assert gw.alive()

    run(scenario())


def test_kid_picks_its_one_key_and_no_kid_tries_every_key_of_the_alg(
        gateway_factory, tmp_path):
    """--jwt-public-key takes a JWKS document and a PEM file together."""
    ka, _ = gen_rsa_key(tmp_path, "a.pem")
    kb, _ = gen_rsa_key(tmp_path, "b.pem")
    ke, ec_pem = gen_ec_key(tmp_path, "e.pem")
    jwks = tmp_path / "jwks.json"
    jwks.write_text("\n  " + json.dumps({"keys": [jwk(ka, "a"), jwk(kb, "b")]}))
    gw = gateway_factory(["--api-key", API_KEY,
                          "--jwt-public-key", f"{jwks},{ec_pem}"])
    claims = {"sub": "42"}

    async def scenario():
        for tok in (mint_rs256(ka, claims, kid="a"), mint_rs256(kb, claims, kid="b"),
                    mint_rs256(ka, claims), mint_rs256(kb, claims), mint_es256(ke, claims)):
            await expect_accepted(gw, tok)
        for tok in (mint_rs256(kb, claims, kid="a"), mint_rs256(ka, claims, kid="b"),
                    mint_rs256(ka, claims, kid="nope"), mint_hs256("x", claims)):
            assert await ws_status(gw, tok) == 401

    run(scenario())


# --------------------------------------------------------------------------
# Bad input


BAD_BODIES = {
    "/api/disconnect": [
        b"nope", b"[]", b"{}", b'"42"', b'{"user":"42"} x', {"user": 42}, {"user": ""},
        {"user": "a b"}, {"user": "x" * 124}, {"user": "42", "reason": 5},
        {"user": "42", "reconnect": "no"}, {"user": "42", "revoke": 1},
        {"user": "42", "bogus": True}, b'{"user":"42","reason":"\xff"}',
    ],
    "/api/subscribe": [
        b"nope", b"[]", {"user": "42"}, {"channel": "room"}, {"user": "", "channel": "room"},
        {"user": "42", "channel": "_control"}, {"user": "42", "channel": "bad name"},
        {"user": "42", "channel": "x" * 129}, {"user": "42", "channel": "room", "since": "abc"},
        {"user": "42", "channel": "room", "since": ""},
        {"user": "42", "channel": "room", "since": "1" * 20},
    ],
    "/api/unsubscribe": [
        b"nope", {"user": "42"}, {"channel": "room"}, {"user": "42", "channel": "_x"},
        {"user": "a b", "channel": "room"},
    ],
}

BAD_FCALLS = [
    ("disconnect", "42", "not json"), ("disconnect", "42", "[]"),
    ("disconnect", "42", '{"bogus":1}'), ("disconnect", "42", '{"revoke":"yes"}'),
    ("disconnect", "42", "{}", "extra"), ("disconnect", "a b"), ("disconnect",),
    ("subscribe", "42"), ("subscribe", "42", "_control"), ("subscribe", "42", "room", "12x"),
    ("unsubscribe", "42"), ("unsubscribe", "42", "bad name"),
]


def test_malformed_orders_are_400_or_errors_and_nothing_happens(gateway_factory, rds):
    gw1, gw2 = two_nodes(gateway_factory)
    listener = rds.pubsub()
    listener.psubscribe(CONTROL)   # no glob characters in it

    async def scenario():
        mine = []
        try:
            mine = await open_user("42", (gw1, gw2))
            await wait_subscribed(rds, PREFIX + "user:42", nodes=2)
            for path, bodies in BAD_BODIES.items():
                for body in bodies:
                    r = gw1.api(path, body)
                    assert r.status == 400, (path, body, r)
                    assert isinstance(r.json().get("error"), str), (path, body, r)
            for args in BAD_FCALLS:
                with pytest.raises(redis_py.exceptions.ResponseError):
                    rds.execute_command("FCALL", "pushgate_" + args[0], 0, *args[1:])
            # nothing was ordered, nobody revoked, no client touched
            assert rds.exists(REVOKED) == 0
            await publish_fin(rds)
            for c in mine:
                await expect_fin_next(c)
            seen = []
            while (m := listener.get_message(timeout=0.2)) is not None:
                if m["type"] == "pmessage":
                    seen.append(m["data"])
            assert seen == [], f"orders published on {CONTROL}: {seen}"
            # a good order still works (the listener counts as a receiver)
            assert order("api", gw2, rds, "disconnect", {"user": "42"}) == 3
            for c in mine:
                await expect_closed(c, 4000, "disconnected")
        finally:
            listener.close()
            await close_all(*mine)

    run(scenario())


def test_control_endpoints_check_method_then_key(gateway_factory, rds):
    gw = gateway_factory(ARGS)
    bodies = {"/api/disconnect": {"user": "42"},
              "/api/subscribe": {"user": "42", "channel": "room"},
              "/api/unsubscribe": {"user": "42", "channel": "room"}}

    async def scenario():
        mine = await open_user("42", (gw,))
        try:
            await wait_subscribed(rds, PREFIX + "user:42")
            for path, body in bodies.items():
                for key in (None, API_KEY, "wrong"):
                    for method in ("GET", "PUT", "DELETE"):
                        r = api_request(gw.port, path, None if method == "GET" else body,
                                        api_key=key, method=method)
                        assert r.status == 405, (path, method, key, r)
                for key in (None, "wrong", API_KEY + "x", ""):
                    r = api_request(gw.port, path, body, api_key=key)
                    assert r.status == 401, (path, key, r)
            await publish_fin(rds)
            for c in mine:
                await expect_fin_next(c)
        finally:
            await close_all(*mine)

    run(scenario())


def test_control_endpoints_answer_503_while_redis_is_down(gateway_factory, redis_server):
    gw = gateway_factory(ARGS)
    bodies = {"/api/disconnect": {"user": "42"},
              "/api/subscribe": {"user": "42", "channel": "room"},
              "/api/unsubscribe": {"user": "42", "channel": "room"}}

    async def scenario():
        c = await ws_connect(gw, "token=" + token("42"))
        try:
            redis_server.kill9()
            await async_wait_until(lambda: gw.readyz() == 503, 10, msg="/readyz 503")
            for path, body in bodies.items():
                r = gw.api(path, body, timeout=10)
                assert r.status == 503, (path, r)
                assert isinstance(r.json().get("error"), str), r
            # its connections are kept
            await c.send_json({"type": "ping"})
            assert await c.recv_json() == {"type": "pong"}
            redis_server.start()
            await async_wait_until(lambda: gw.readyz() == 200, 15, msg="ready again")
            assert order("api", gw, None, "disconnect", {"user": "42"}) == 1
            await expect_closed(c, 4000, "disconnected")
        finally:
            await c.close()

    run(scenario())


# --------------------------------------------------------------------------
# --recovery-timeout


def test_resume_whose_history_read_times_out_is_told_incomplete_then_gets_live(
        gateway_factory, redis_server, rds):
    """Redis stalls (frozen by SIGSTOP, as a VM pause or a slow script would)
    while a client resumes: the history read is not answered within
    --recovery-timeout 1, so the client is told {"complete":false} (SSE
    pushgate.recovery) and then gets the live stream once Redis is back."""
    gw = gateway_factory(ARGS + ["--public-topics", "news", "--recovery-timeout", "1"])
    ids = [gw.publish({"channel": "news", "data": i}).json()["id"] for i in range(3)]
    notice = {"type": "recovery", "complete": False}

    def redis_state():
        with open(f"/proc/{redis_server.proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    async def scenario():
        ws = sse = None
        stopped = False
        try:
            os.kill(redis_server.proc.pid, signal.SIGSTOP)
            stopped = True
            await async_wait_until(lambda: redis_state() == "T", msg="Redis stopped")
            t0 = time.monotonic()
            ws = await ws_connect(gw, f"channels=news&since={ids[0]}")
            sse = await sse_connect(gw, "channels=news", last_event_id=ids[0])
            assert sse.status == 200
            assert await ws.recv_json(4) == notice
            await expect_notice(sse, notice, timeout=4)
            took = time.monotonic() - t0
            assert 0.8 <= took <= 1.8, f"told after {took:.2f}s with --recovery-timeout 1"
            os.kill(redis_server.proc.pid, signal.SIGCONT)
            stopped = False
            await wait_subscribed(rds, PREFIX + "news")
            r = gw.publish({"channel": "news", "event": "FIN", "data": None})
            assert r.status == 200, r
            fin = {"channel": "news", "event": "FIN", "id": r.json()["id"], "data": None}
            assert await ws.recv_json() == fin
            assert (await sse.next_json())[1] == fin
        finally:
            if stopped:
                os.kill(redis_server.proc.pid, signal.SIGCONT)
            await close_all(ws, sse)

    run(scenario())
