"""Recovery from history (SPEC §4 Recovery): since= / Last-Event-ID /
subscribe-with-since deliver every later history-backed message in id order
before any live one, with no gap and no duplicate at the seam, and say once
when history no longer reaches back."""

import asyncio
import json
import threading

import pytest

from pgtest import (API_KEY, async_wait_until, mint_hs256, run, sse_connect,
                    ws_handshake_status, ws_connect)

SECRET = "s"
ARGS = ["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous",
        "--public-topics", "news,sports,a,b"]
RECOVERY_FALSE = {"type": "recovery", "complete": False}


def api(gw, channel, data, event=None):
    body = {"channel": channel, "data": data}
    if event:
        body["event"] = event
    r = gw.publish(body)
    assert r.status == 200, r
    return r.json()["id"]


def fin(gw, channel="news"):
    return api(gw, channel, None, event="FIN")


def redis_now_ms(rds):
    sec, usec = rds.time()
    return sec * 1000 + usec // 1000


async def ws_collect_until_fin(c, timeout=10.0):
    out = []
    while True:
        msg = await c.recv_json(timeout)
        out.append(msg)
        if msg.get("event") == "FIN":
            return out


async def sse_collect_until_fin(c, timeout=10.0):
    out = []
    while True:
        ev = await c.next_data_event(timeout)
        assert ev is not None, f"stream ended after {out}"
        out.append((ev, json.loads(ev["data"])))
        if ev.get("event") == "FIN":
            return out


def test_ws_since_replays_history_in_order_then_live(gateway_factory):
    gw = gateway_factory(ARGS)
    ids = [api(gw, "news", i) for i in range(4)]
    api(gw, "sports", "other channel")

    async def scenario():
        c = await ws_connect(gw, f"channels=news&since={ids[0]}")
        try:
            live = fin(gw)
            got = await ws_collect_until_fin(c)
            assert got == [{"channel": "news", "id": ids[i], "data": i} for i in (1, 2, 3)] + \
                [{"channel": "news", "event": "FIN", "id": live, "data": None}]
        finally:
            await c.close()

    run(scenario())


def test_sse_last_event_id_beats_since(gateway_factory):
    gw = gateway_factory(ARGS)
    ids = [api(gw, "news", i) for i in range(4)]

    async def scenario():
        c = await sse_connect(gw, f"channels=news&since={ids[0]}", last_event_id=ids[2])
        try:
            assert c.status == 200
            live = fin(gw)
            got = await sse_collect_until_fin(c)
            assert [(ev.get("id"), m["data"]) for ev, m in got] == [(ids[3], 3), (live, None)]
        finally:
            await c.close()

    run(scenario())


def test_sse_since_query_works_without_last_event_id(gateway_factory):
    gw = gateway_factory(ARGS)
    ids = [api(gw, "news", i) for i in range(3)]

    async def scenario():
        c = await sse_connect(gw, f"channels=news&since={ids[0]}")
        try:
            live = fin(gw)
            got = await sse_collect_until_fin(c)
            assert [ev.get("id") for ev, _ in got] == [ids[1], ids[2], live]
        finally:
            await c.close()

    run(scenario())


def test_recovery_covers_user_and_several_channels_in_id_order(gateway_factory):
    gw = gateway_factory(ARGS)
    tok = mint_hs256(SECRET, {"sub": "42"})
    since = api(gw, "news", "before")
    expect = [("sports", api(gw, "sports", 1)), ("user:42", api(gw, "user:42", 2)),
              ("news", api(gw, "news", 3)), ("user:42", api(gw, "user:42", 4)),
              ("sports", api(gw, "sports", 5))]
    api(gw, "user:43", "not mine")

    async def scenario():
        c = await ws_connect(gw, f"channels=news,sports&since={since}&token={tok}")
        try:
            live = fin(gw)
            got = await ws_collect_until_fin(c)
            assert [(m["channel"], m["id"]) for m in got] == expect + [("news", live)]
        finally:
            await c.close()

    run(scenario())


def test_recovery_seam_no_gap_no_dup_while_publishing(gateway_factory, rds):
    """Messages keep coming while the client connects with since=: every id
    after since arrives exactly once, in order, across history and live."""
    gw = gateway_factory(ARGS + ["--history-size", "1000"])
    published = []
    started = threading.Event()
    stop = threading.Event()
    errors = []

    def publisher():
        try:
            r = gw.redis.client()
            for i in range(400):
                if stop.is_set():
                    break
                published.append(r.execute_command("FCALL", "pushgate_publish", 0,
                                                   "news", json.dumps({"data": i})))
                if i == 40:
                    started.set()
        except Exception as e:  # reported by the main thread
            errors.append(e)
            started.set()

    t = threading.Thread(target=publisher)
    t.start()
    try:
        assert started.wait(10)
        since = published[20]

        async def scenario():
            c = await ws_connect(gw, f"channels=news&since={since}")
            try:
                await asyncio.get_running_loop().run_in_executor(None, t.join, 30)
                assert not errors, errors
                last = rds.execute_command("FCALL", "pushgate_publish", 0, "news",
                                           json.dumps({"event": "FIN", "data": None}))
                got = await ws_collect_until_fin(c, timeout=10)
                want = published[published.index(since) + 1:] + [last]
                got_ids = [m.get("id") for m in got]
                assert got_ids == want, (
                    f"{len(got_ids)} received vs {len(want)} expected; "
                    f"dups={len(got_ids) - len(set(got_ids))} "
                    f"missing={sorted(set(want) - set(got_ids))[:5]}")
            finally:
                await c.close()

        run(scenario())
    finally:
        stop.set()
        t.join(30)


def test_trimmed_history_is_reported_once_then_what_there_is(gateway_factory):
    gw = gateway_factory(ARGS + ["--history-size", "2"])
    ids = [api(gw, "news", i) for i in range(5)]

    async def scenario():
        c = await ws_connect(gw, f"channels=news&since={ids[0]}")
        try:
            # what history still had when the client came back; the FIN goes
            # out only after it, or it would itself trim ids[3] first
            got = [await c.recv_json() for _ in range(3)]
            assert got == [RECOVERY_FALSE,
                           {"channel": "news", "id": ids[3], "data": 3},
                           {"channel": "news", "id": ids[4], "data": 4}]
            live = fin(gw)
            got = await ws_collect_until_fin(c)
            assert got == [{"channel": "news", "event": "FIN", "id": live, "data": None}]
        finally:
            await c.close()

        # History now holds ids[4] and that FIN; ids[1..3] are gone. The
        # node may still keep the first read's result (reconnect-storm
        # coalescing, README "Reconnect storms") with ids[3] in it, unless
        # the channel was unsubscribed in between: either is "what there is",
        # told incomplete, in order, each once, and ending with ids[4], FIN.
        s = await sse_connect(gw, "channels=news", last_event_id=ids[0])
        try:
            got = await sse_collect_until_fin(s)
            ev0, m0 = got[0]
            assert ev0.get("event") == "pushgate.recovery" and m0 == RECOVERY_FALSE
            assert [ev.get("id") for ev, _ in got[1:]] in ([ids[4], live], [ids[3], ids[4], live])
        finally:
            await s.close()

    run(scenario())


def test_complete_recovery_sends_no_recovery_notice(gateway_factory):
    gw = gateway_factory(ARGS + ["--history-size", "3"])
    ids = [api(gw, "news", i) for i in range(5)]

    async def scenario():
        c = await ws_connect(gw, f"channels=news&since={ids[1]}")
        try:
            # the history first: a FIN published before the client's history
            # read would itself trim ids[2] (history size 3) and cause a notice
            got = [await c.recv_json() for _ in range(3)]
            assert [m.get("id") for m in got] == ids[2:]
            live = fin(gw)
            got = await ws_collect_until_fin(c)
            assert [m.get("id") for m in got] == [live]
        finally:
            await c.close()

    run(scenario())


def test_since_older_than_ttl_without_history_is_reported_once(gateway_factory, rds):
    gw = gateway_factory(ARGS + ["--history-ttl", "60"])
    old = str((redis_now_ms(rds) - 120_000) * 1000)

    async def scenario():
        c = await ws_connect(gw, f"channels=a,b&since={old}")
        try:
            live = fin(gw, "a")
            got = await ws_collect_until_fin(c)
            assert got == [RECOVERY_FALSE,
                           {"channel": "a", "event": "FIN", "id": live, "data": None}]
        finally:
            await c.close()

    run(scenario())


def test_recent_since_without_history_is_complete(gateway_factory, rds):
    gw = gateway_factory(ARGS)
    recent = str((redis_now_ms(rds) - 1000) * 1000)

    async def scenario():
        c = await ws_connect(gw, f"channels=a&since={recent}")
        try:
            live = fin(gw, "a")
            got = await ws_collect_until_fin(c)
            assert got == [{"channel": "a", "event": "FIN", "id": live, "data": None}]
        finally:
            await c.close()

    run(scenario())


def test_subscribe_command_with_since_recovers_that_channel(gateway_factory, rds):
    gw = gateway_factory(ARGS)
    ids = [api(gw, "sports", i) for i in range(3)]

    async def scenario():
        c = await ws_connect(gw)
        try:
            await c.send_json({"type": "subscribe", "channel": "sports", "since": ids[0]})
            first = await c.recv_json()
            assert first == {"type": "subscribed", "channel": "sports"}
            await async_wait_until(lambda: dict(rds.pubsub_numsub("pushgate:sports"))
                                   .get("pushgate:sports", 0) == 1, msg="sports subscribed")
            live = fin(gw, "sports")
            got = await ws_collect_until_fin(c)
            assert [(m["channel"], m.get("id")) for m in got] == \
                [("sports", ids[1]), ("sports", ids[2]), ("sports", live)]
        finally:
            await c.close()

    run(scenario())


@pytest.mark.parametrize("since", ["abc", "-1", "12x", "1.5", "99999999999999999999999"])
def test_malformed_since_is_refused_400_before_upgrade_or_stream(gateway_factory, since):
    """since= is a message id (SPEC §3, §4: decimal digits). One that is not
    cannot be honoured, and ignoring it would silently skip the recovery the
    client asked for (a gap it is never told about): the request is refused
    400 like any other malformed connect parameter (SPEC §6), WebSocket
    before the upgrade, SSE before the stream, Last-Event-ID alike."""
    gw = gateway_factory(ARGS)
    ids = [api(gw, "news", i) for i in range(2)]

    async def scenario():
        assert await ws_handshake_status(gw, "channels=news&since=" + since) == 400
        for kw in ({"query": "channels=news&since=" + since},
                   {"query": "channels=news", "last_event_id": since}):
            s = await sse_connect(gw, **kw)
            try:
                assert s.status == 400, (kw, s.status)
                assert "text/event-stream" not in s.headers.get("content-type", ""), kw
                body = await s.read_all(2)
                assert isinstance(json.loads(body).get("error"), str), (kw, body)
            finally:
                await s.close()
        # the node still serves, and a good since still recovers
        c = await ws_connect(gw, f"channels=news&since={ids[0]}")
        try:
            assert await c.recv_json() == {"channel": "news", "id": ids[1], "data": 1}
        finally:
            await c.close()

    run(scenario())
