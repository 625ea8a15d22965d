"""The events stream for backends (SPEC §9), end to end: real redis-server,
real nodes, WebSocket clients; the stream is read exactly as the README
shows, with a consumer group and XREADGROUP. The `send` command is checked
from both ends: every `sent` answer names an entry that is in the stream,
and every refusal (`error` with the client's ref) left nothing there."""

import asyncio
import json
import signal

import redis as redis_py

from pgtest import API_KEY, async_wait_until, metric_value, mint_hs256, run, ws_connect
from test_core import close_all

SECRET = "s"
STREAM = "pushgate:events"
ARGS = ["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous",
        "--public-topics", "room.*,lobby", "--events"]


def token(sub, **claims):
    claims["sub"] = sub
    return mint_hs256(SECRET, claims)


def read_group(rds, group="backend", consumer="c1", count=100, block_ms=2000):
    """What the README's Python consumer does: a group of our own, read
    from it, acknowledge what was read. Returns [(id, fields)]."""
    try:
        rds.xgroup_create(STREAM, group, id="0", mkstream=True)
    except redis_py.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    got = []
    for _stream, entries in rds.xreadgroup(group, consumer, {STREAM: ">"}, count=count,
                                           block=block_ms) or []:
        for entry_id, fields in entries:
            got.append((entry_id, fields))
            rds.xack(STREAM, group, entry_id)
    return got


def read_all_group(rds, want, group="backend"):
    """Read with the group until `want` entries came (or 5 s passed)."""
    out = []

    async def more():
        out.extend(read_group(rds, group, block_ms=100))
        return len(out) >= want

    return out, more


def test_connect_subscribe_send_unsubscribe_disconnect_in_order_read_with_xreadgroup(
        gateway_factory, rds):
    gw = gateway_factory(ARGS + ["--node-id", "n1"])

    async def body():
        c = await ws_connect(gw, "token=" + token("42") + "&channels=room.1")
        try:
            await c.send_json({"type": "subscribe", "channel": "lobby"})
            assert (await c.recv_json())["type"] == "subscribed"
            await c.send_json({"type": "send", "data": {"text": "hi", "n": [1, 2]}, "ref": "r1"})
            sent = await c.recv_json()
            assert sent["type"] == "sent" and sent["ref"] == "r1", sent
            await c.send_json({"type": "unsubscribe", "channel": "lobby"})
            assert (await c.recv_json())["type"] == "unsubscribed"
            await c.close()
            out, more = read_all_group(rds, 6)
            await async_wait_until(more, timeout=5, msg="six events")
            types = [(f["type"], f.get("channel")) for _, f in out]
            assert types == [("connect", None), ("subscribe", "room.1"),
                             ("subscribe", "lobby"), ("message", None),
                             ("unsubscribe", "lobby"), ("disconnect", None)], out
            for _, f in out:
                assert f["node"] == "n1" and f["user"] == "42" and f["conn"].isdigit()
                assert f["ts"].isdigit()
            msg_id, msg = out[3]
            assert msg_id == sent["id"]
            assert json.loads(msg["data"]) == {"text": "hi", "n": [1, 2]}
            disc = out[5][1]
            # the client's own close code (websockets closes with 1000), read
            # from its Close frame since the node parses frames itself (427b23b)
            assert disc["code"] == "1000" and disc["reason"] == ""
            # read once by the group: nothing is pending
            assert rds.xpending(STREAM, "backend")["pending"] == 0
        finally:
            await close_all(c)

    run(body())


def test_disconnect_events_carry_the_servers_close_code_and_reason(gateway_factory, rds):
    gw = gateway_factory(ARGS + ["--node-id", "n1"])

    async def body():
        a = await ws_connect(gw, "token=" + token("42"))
        anon = await ws_connect(gw)
        try:
            await async_wait_until(lambda: rds.xlen(STREAM) >= 2, msg="two connects")
            assert rds.fcall("pushgate_disconnect", 0, "42",
                             json.dumps({"reason": "bye now"})) == 1
            code, reason = await a.wait_closed()
            assert code == 4000
            await async_wait_until(lambda: rds.xlen(STREAM) >= 3, msg="the disconnect")
            last = rds.xrevrange(STREAM, count=1)[0][1]
            assert last["type"] == "disconnect" and last["user"] == "42"
            assert last["code"] == "4000" and last["reason"] == "bye now"
            first = rds.xrange(STREAM)[:2]
            assert sorted(f["user"] for _, f in first) == ["", "42"]   # anonymous: empty
            # a drain writes the remaining ones before the node exits
            assert gw.stop(signal.SIGTERM) == 0
            last = rds.xrevrange(STREAM, count=1)[0][1]
            assert last["type"] == "disconnect" and last["user"] == ""
            assert last["code"] == "1001"
        finally:
            await close_all(a, anon)

    run(body())


def test_disconnect_events_carry_the_clients_close_code_and_reason(gateway_factory, rds):
    """A client that closes with a code and a reason: its disconnect event
    carries both (SPEC §9), and the node's Close answer echoes them."""
    gw = gateway_factory(ARGS + ["--node-id", "n1"])

    async def body():
        c = await ws_connect(gw, "token=" + token("42"))
        try:
            await async_wait_until(lambda: rds.xlen(STREAM) >= 1, msg="the connect")
            await asyncio.wait_for(c.ws.close(4001, "gone shopping ☕"), 5)
            assert (c.ws.close_code, c.ws.close_reason) == (4001, "gone shopping ☕")
            await async_wait_until(lambda: rds.xlen(STREAM) >= 2, msg="the disconnect")
            last = rds.xrevrange(STREAM, count=1)[0][1]
            assert last["type"] == "disconnect" and last["user"] == "42", last
            assert (last["code"], last["reason"]) == ("4001", "gone shopping ☕"), last
        finally:
            await close_all(c)

    run(body())


def test_send_past_the_rate_is_refused_with_its_ref_and_sent_answers_equal_entries(
        gateway_factory, rds):
    gw = gateway_factory(ARGS + ["--node-id", "n1", "--client-send-rate", "5"])

    async def body():
        c = await ws_connect(gw, "token=" + token("42"))
        try:
            for i in range(12):
                await c.send_json({"type": "send", "data": i, "ref": f"m{i}"})
            answers = [await c.recv_json() for _ in range(12)]
            sent = [a for a in answers if a["type"] == "sent"]
            refused = [a for a in answers if a["type"] == "error"]
            assert len(sent) + len(refused) == 12
            assert 5 <= len(sent) <= 10   # the window may turn once during the burst
            assert all(a["code"] == "rate_limited" and a["ref"].startswith("m") for a in refused)
            stored = [f for _, f in rds.xrange(STREAM) if f["type"] == "message"]
            assert len(stored) == len(sent)
            assert sorted(a["id"] for a in sent) == \
                [i for i, f in rds.xrange(STREAM) if f["type"] == "message"]
            assert sorted(json.loads(f["data"]) for f in stored) == \
                sorted(int(a["ref"][1:]) for a in sent)
            # the connection stays, and a send without a ref is answered without one
            await asyncio.sleep(1.05)   # the rate window is what is tested
            await c.send_json({"type": "send", "data": None})
            a = await c.recv_json()
            assert a["type"] == "sent" and "ref" not in a
            # bad sends: no data, ref not a string
            await c.send_json({"type": "send", "ref": "x"})
            a = await c.recv_json()
            assert a == {"type": "error", "code": "bad_send", "message": a["message"], "ref": "x"}
            await c.send_json({"type": "send", "data": 1, "ref": 7})
            assert (await c.recv_json())["code"] == "bad_ref"
            m = gw.metrics()
            assert metric_value(m, "pushgate_client_sends_total", {"result": "sent"}) == len(sent) + 1
            assert metric_value(m, "pushgate_client_sends_total",
                                {"result": "refused"}) == len(refused) + 2
        finally:
            await close_all(c)

    run(body())


def test_send_with_events_off_or_redis_down_is_an_error_and_stores_nothing(
        gateway_factory, rds, redis_server):
    off = gateway_factory([a for a in ARGS if a != "--events"] + ["--node-id", "off"])
    on = gateway_factory(ARGS + ["--node-id", "on"])

    async def body():
        a = await ws_connect(off, "token=" + token("42"))
        b = await ws_connect(on, "token=" + token("43"))
        try:
            await a.send_json({"type": "send", "data": {"x": 1}, "ref": "a1"})
            err = await a.recv_json()
            assert err["type"] == "error" and err["code"] == "events_off" and err["ref"] == "a1"
            await async_wait_until(lambda: rds.xlen(STREAM) >= 1, msg="b's connect")
            assert all(f["node"] == "on" for _, f in rds.xrange(STREAM))

            redis_server.kill9()
            await async_wait_until(lambda: on.readyz() == 503, timeout=10,
                                   msg="node sees Redis gone")
            await b.send_json({"type": "send", "data": "lost?", "ref": "b1"})
            err = await b.recv_json()
            assert err["type"] == "error" and err["ref"] == "b1"
            assert err["code"] == "unavailable"
            redis_server.start(redis_server.port)
            await async_wait_until(lambda: on.readyz() == 200, timeout=15, msg="ready again")
            r2 = redis_server.client()
            assert [f for _, f in r2.xrange(STREAM) if f["type"] == "message"] == []
            await b.send_json({"type": "send", "data": "now", "ref": "b2"})
            ok = await b.recv_json()
            assert ok["type"] == "sent" and ok["ref"] == "b2"
            assert [json.loads(f["data"]) for _, f in r2.xrange(STREAM)
                    if f["type"] == "message"] == ["now"]
        finally:
            await close_all(a, b)

    run(body())


def test_the_stream_is_capped_near_events_max_len(gateway_factory, rds):
    gw = gateway_factory(ARGS + ["--node-id", "n1", "--events-max-len", "10",
                                 "--client-send-rate", "1000"])

    async def body():
        # 6 clients x 90: each stays under the 100 commands a second any
        # client may make
        clients = [await ws_connect(gw) for _ in range(6)]
        try:
            for c in clients:
                for i in range(90):
                    await c.send_json({"type": "send", "data": i})
            for c in clients:
                for _ in range(90):
                    assert (await c.recv_json())["type"] == "sent"
            # MAXLEN ~ trims whole radix-tree nodes (100 entries by default)
            assert 10 <= rds.xlen(STREAM) <= 10 + 100
        finally:
            await close_all(*clients)

    run(body())


def test_mass_close_of_2000_writes_one_disconnect_each_in_batches_and_leaves_presence_exact(
        gateway_factory, rds):
    """2 000 connections of 500 users (four each), every one in its user
    channel and in a presence topic room.m<k> of its user, close at once:
    the stream then has exactly one disconnect entry per connection (after
    one connect and one subscribe each), every presence key of the run is
    gone and every channel's stats say 0, and the 4 000 presence removals
    went out in a handful of FCALLs (pushgate_presence_update, at most 1 000
    changes each), not one round trip per connection. scripts/
    presence-mass-close.py measures the same at 10 000 (README "Presence")."""
    import resource
    n, users = 2000, 500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * n + 200          # the test's sockets and the node's, with room
    if soft < want:             # the node inherits the raised limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    assert min(want, hard) >= want, f"open-file limit {hard} too low for {n} clients"
    gw = gateway_factory(ARGS + ["--node-id", "n1", "--presence-topics", "room.*",
                                 "--log-level", "info"])

    def fcalls():
        return rds.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)

    async def body():
        gate = asyncio.Semaphore(200)

        async def one(i):
            async with gate:
                u = f"m{i % users}"
                return await ws_connect(gw, f"token={token(u)}&channels=room.{u}", timeout=20)

        clients = await asyncio.gather(*[one(i) for i in range(n)])
        try:
            nodeidx = "pushgate:presence-node:n1"
            await async_wait_until(lambda: rds.scard(nodeidx) == 2 * users, timeout=20,
                                   msg="the node's entries in every channel")
            await async_wait_until(
                lambda: json.loads(rds.fcall("pushgate_presence_stats", 0, f"room.m{users - 1}"))
                == {"clients": n // users, "users": 1}, timeout=20, msg="the last room full")
            await async_wait_until(lambda: rds.xlen(STREAM) == 2 * n, timeout=20,
                                   msg="a connect and a subscribe entry each")
            before = fcalls()
            await asyncio.gather(*[c.close() for c in clients])
            # polled without FCALL, so that the count below is the node's alone
            await async_wait_until(lambda: rds.scard(nodeidx) == 0, timeout=30,
                                   msg="the node has entries nowhere")
            updates = fcalls() - before
            left = [k for k in rds.scan_iter("pushgate:presence*", count=1000)
                    if k != "pushgate:presence-nodes"]
            assert left == [], left[:5]
            for u in (f"m{k}" for k in range(users)):
                for ch in (f"user:{u}", f"room.{u}"):
                    assert json.loads(rds.fcall("pushgate_presence_stats", 0, ch)) == \
                        {"clients": 0, "users": 0}, ch
            # 4 000 removals: at least 4 calls, and a few more since closes
            # arrive over several loop iterations; a heartbeat may fall in
            print("presence FCALLs for", n, "closes:", updates)
            assert 4 <= updates <= 60, updates
            await async_wait_until(lambda: rds.xlen(STREAM) >= 3 * n, timeout=20,
                                   msg="a disconnect entry each")
            types = {}
            conns = set()
            for _, f in rds.xrange(STREAM):
                types[f["type"]] = types.get(f["type"], 0) + 1
                if f["type"] == "disconnect":
                    conns.add(f["conn"])
            assert types == {"connect": n, "subscribe": n, "disconnect": n}, types
            assert len(conns) == n
            assert metric_value(gw.metrics(), "pushgate_events_dropped_total") == 0
        finally:
            await close_all(*clients)

    run(body(), timeout=180)
