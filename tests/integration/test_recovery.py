"""Recovery (SPEC §4): since=, Last-Event-ID and a subscribe command's since
give every history message after the id, in id order, before any live one,
with no duplicate and no gap at the seam; the recovery-incomplete notice comes
exactly when history no longer reaches back (trimmed, or expired while since
is older than --history-ttl)."""

import asyncio
import random

import pytest

from faultkit import (Publisher, SubscriberTap, check_exact, fcall, nodes,  # noqa: F401
                      open_stream)
from pgtest import API_KEY, async_wait_until, run, wait_until

BASE = ["--api-key", API_KEY, "--public-topics", "news,sports,feed"]
NOTICE = {"type": "recovery", "complete": False}


async def connect(gw, method, since, channel="news", extra_query=""):
    """A client recovering `channel` from `since` by one of four ways."""
    q = extra_query
    if method == "ws-query":
        c = await open_stream(gw.port, "ws", f"channels={channel}&since={since}{q}")
    elif method == "ws-subscribe":
        c = await open_stream(gw.port, "ws", q.lstrip("&"))
        c.send_json({"type": "subscribe", "channel": channel, "since": str(since)})
    elif method == "sse-query":
        c = await open_stream(gw.port, "sse", f"channels={channel}&since={since}{q}")
    elif method == "sse-last-event-id":
        # Last-Event-ID wins over since= (here a far older since, which would
        # bring the whole history and a recovery notice if it were used)
        c = await open_stream(gw.port, "sse", f"channels={channel}&since=1{q}",
                              last_event_id=str(since))
    else:
        raise ValueError(method)
    assert c.status in (101, 200), f"{method}: refused {c.status}"
    return c


METHODS = ["ws-query", "ws-subscribe", "sse-query", "sse-last-event-id"]


def test_recovery_at_random_points_under_a_steady_publisher(nodes, redis_server):
    """A publisher FCALLs ~300 msg/s to one channel while 48 clients (WS
    since=, WS subscribe with since, SSE since=, SSE Last-Event-ID) connect
    with `since` set to a random id it already got back. Each client must get
    exactly the ids after its since, in order: history, then live, no gap and
    no duplicate at the seam."""
    gw = nodes(BASE + ["--history-size", "5000"])
    pub = Publisher(redis_server, "feed", rate=300)
    rng = random.Random(4)

    async def scenario():
        clients = []
        pub.start()
        try:
            await async_wait_until(lambda: len(pub.snapshot()) >= 300, 10,
                                   msg="300 published")
            for k in range(48):
                ids = pub.snapshot()
                since = rng.choice(ids[-600:])
                method = METHODS[k % 4]
                clients.append((method, since, await connect(gw, method, since, "feed")))
                await asyncio.sleep(rng.uniform(0.02, 0.12))
        finally:
            pub.stop()
        assert not pub.failures, pub.failures[:3]
        published = pub.snapshot()
        last = published[-1]
        for method, since, c in clients:
            await async_wait_until(lambda c=c: c.last_id == last or c.done.done(), 20,
                                   msg=f"{method} since={since}: the last id")
        for method, since, c in clients:
            assert c.notices == [], f"{method} since={since}: unexpected notice"
            check_exact(c.ids, [i for i in published if i > since], f"{method} since={since}")
            if method == "ws-subscribe":
                assert c.controls == [{"type": "subscribed", "channel": "feed"}]
            c.abort()

    run(scenario(), 80)


@pytest.mark.parametrize("method", METHODS)
def test_notice_only_when_an_entry_after_since_was_trimmed(nodes, rds, method):
    """--history-size 5, ten messages: since=the 1st (entries 2..5 were
    trimmed) gets the notice once, then entries 6..10, then live; since=the
    5th (nothing after it is gone) gets 6..10 and no notice."""
    gw = nodes(BASE + ["--history-size", "5"])
    ids = [int(fcall(rds, "news", {"event": "e", "data": n})) for n in range(10)]

    async def scenario():
        gone = await connect(gw, method, ids[0])
        kept = await connect(gw, method, ids[4])
        for c in (gone, kept):
            await async_wait_until(lambda c=c: len(c.ids) >= 5, 5, msg="history")
        live = int(fcall(rds, "news", {"event": "live", "data": 10}))
        for c in (gone, kept):
            await async_wait_until(lambda c=c: len(c.ids) >= 6, 5, msg="live message")
        assert gone.order == ["recovery"] + ids[5:] + [live]
        assert gone.notices == [NOTICE]
        assert kept.order == ids[5:] + [live]
        for c in (gone, kept):
            c.abort()

    run(scenario(), 30)


@pytest.mark.parametrize("method", ["ws-query", "sse-last-event-id"])
def test_notice_when_history_expired_and_since_older_than_ttl(nodes, rds, method):
    """--history-ttl 1: once the channel's history has expired and since is
    older than the TTL, the client is told (nothing can be replayed); a
    since that is recent on a channel without history is complete."""
    gw = nodes(BASE + ["--history-ttl", "1"])
    old = int(fcall(rds, "news", {"event": "old", "data": 0}))
    wait_until(lambda: not rds.exists("pushgate:history:news"), 5, 0.05,
               msg="history expired")
    # since must be older than the TTL by the Redis clock
    wait_until(lambda: int(rds.time()[0]) * 1000 + rds.time()[1] // 1000
               > old // 1000 + 1100, 5, 0.05, msg="since older than the TTL")

    async def scenario():
        expired = await connect(gw, method, old)
        # a recent since on a channel that never had history: complete
        recent = int(fcall(rds, "other", {"data": 0}))
        fresh = await connect(gw, method, recent, channel="sports")
        await async_wait_until(lambda: expired.notices, 5, msg="the notice")
        live = int(fcall(rds, "news", {"event": "live", "data": 1}))
        live2 = int(fcall(rds, "sports", {"event": "live", "data": 2}))
        await async_wait_until(lambda: expired.ids == [live], 5, msg="live after notice")
        await async_wait_until(lambda: fresh.ids == [live2], 5, msg="live at fresh")
        assert expired.order == ["recovery", live]
        assert fresh.order == [live2]
        for c in (expired, fresh):
            c.abort()

    run(scenario(), 30)


@pytest.mark.parametrize("kind", ["ws", "sse"])
def test_recovery_merges_several_channels_in_id_order(nodes, rds, kind):
    """since applies to every channel of the connection: history of two
    topics (and broadcast) comes merged in id order, then live."""
    gw = nodes(BASE)
    since = int(fcall(rds, "news", {"data": "before"}))
    ids = []
    for n in range(12):
        ids.append(int(fcall(rds, ("news", "sports", "broadcast")[n % 3], {"data": n})))

    async def scenario():
        c = await open_stream(gw.port, kind, f"channels=news,sports&since={since}")
        await async_wait_until(lambda: len(c.ids) >= 12, 5, msg="history")
        live = int(fcall(rds, "sports", {"data": "live"}))
        await async_wait_until(lambda: len(c.ids) >= 13, 5, msg="live")
        assert c.order == ids + [live]
        c.abort()

    run(scenario(), 30)


@pytest.mark.parametrize("kind", ["ws", "sse"])
def test_a_resume_served_from_memory_still_merges_in_id_order(nodes, rds, kind):
    """A second client resuming the same channels from the same since is
    served from the windows the first one's history reads left, with no
    read of its own: its channels still come merged in id order, not one
    channel's history after the other's (a bare since / SSE id is one cut,
    so an SSE client dropping after an out-of-order id would lose the
    lower one)."""
    gw = nodes(BASE)
    since = int(fcall(rds, "news", {"data": "before"}))
    ids = [int(fcall(rds, ("news", "sports")[n % 2], {"data": n})) for n in range(8)]

    async def scenario():
        q = f"channels=news,sports&since={since}"
        first = await open_stream(gw.port, kind, q)
        await async_wait_until(lambda: len(first.ids) >= 8, 5, msg="the first resume")
        second = await open_stream(gw.port, kind, q)
        await async_wait_until(lambda: len(second.ids) >= 8, 5, msg="the second resume")
        assert first.order == ids
        assert second.order == ids
        first.abort()
        second.abort()

    run(scenario(), 30)


@pytest.mark.parametrize("kind", ["ws", "sse"])
def test_a_resume_while_the_channels_unsubscribe_is_unconfirmed_loses_nothing(
        nodes, redis_server, rds, kind):
    """The channel's last client leaves and a client resumes it (an
    EventSource reopened with a fresh token) while Redis has done the
    node's UNSUBSCRIBE but the node has not heard so yet. The resumer's
    history read must wait for the channel's new SUBSCRIBE: read at once,
    a message published before that SUBSCRIBE is neither in what was read
    nor delivered live, and is lost. A proxy holds Redis's replies to the
    node's subscriber to keep that moment open; the message goes through
    POST /api/publish, i.e. the same link as the read and after it."""
    tap = SubscriberTap(redis_server)
    tap.start()
    chan = "pushgate:news"

    def numsub():
        return int(rds.execute_command("PUBSUB", "NUMSUB", chan)[1])

    async def scenario(gw):
        a = await open_stream(gw.port, kind, "channels=news")
        await async_wait_until(lambda: numsub() == 1, 5, msg="news subscribed")
        since = int(fcall(rds, "news", {"data": "seen"}))
        await async_wait_until(lambda: a.ids == [since], 5, msg="the first client's message")
        tap.clear()
        tap.hold()
        a.abort()
        await async_wait_until(lambda: tap.sent(b"UNSUBSCRIBE") and numsub() == 0, 5,
                               msg="news unsubscribed in Redis")
        b = await connect(gw, "ws-query" if kind == "ws" else "sse-last-event-id", since)
        r = await asyncio.to_thread(gw.publish, {"channel": "news", "data": "between"})
        assert r.status == 200, r
        between = int(r.json()["id"])
        tap.release()
        await async_wait_until(lambda: between in b.ids, 5,
                               msg="the message published before the new SUBSCRIBE")
        live = int(fcall(rds, "news", {"data": "live"}))
        await async_wait_until(lambda: len(b.ids) >= 2, 5, msg="live")
        assert b.order == [between, live]
        b.abort()

    try:
        gw = nodes(BASE, start=False)
        gw.redis_url = tap.url
        gw.start()
        run(scenario(gw), 30)
    finally:
        tap.close()


def test_subscribe_since_recovers_only_that_channel(nodes, rds):
    """A subscribe command with since recovers that channel alone: the
    broadcast history after since is not replayed to it."""
    gw = nodes(BASE)
    since = int(fcall(rds, "news", {"data": "before"}))
    b = int(fcall(rds, "broadcast", {"data": "b"}))
    n1 = int(fcall(rds, "news", {"data": 1}))
    n2 = int(fcall(rds, "news", {"data": 2}))
    assert since < b < n1 < n2

    async def scenario():
        c = await open_stream(gw.port, "ws")
        c.send_json({"type": "subscribe", "channel": "news", "since": str(since)})
        await async_wait_until(lambda: len(c.ids) >= 2, 5, msg="news history")
        live = int(fcall(rds, "broadcast", {"data": "live"}))
        await async_wait_until(lambda: len(c.ids) >= 3, 5, msg="live broadcast")
        assert c.order == [n1, n2, live]
        assert c.controls == [{"type": "subscribed", "channel": "news"}]
        c.abort()

    run(scenario(), 30)


@pytest.mark.parametrize("kind", ["ws", "sse"])
def test_clients_recovering_while_redis_is_away_do_not_stall_the_node(
        nodes, redis_server, rds, kind):
    """Two clients connect with since= while Redis is down: their history
    reads must wait without stalling the node (it keeps answering HTTP),
    and once Redis is back they get live messages, once each."""
    gw = nodes(BASE)
    since = int(fcall(rds, "news", {"data": "before"}))

    async def scenario():
        redis_server.kill9()
        await async_wait_until(lambda: gw.readyz() == 503, 8, msg="/readyz 503")
        a = await open_stream(gw.port, kind, f"channels=news&since={since}")
        b = await open_stream(gw.port, kind, f"channels=news&since={since}")
        assert (a.status, b.status) == ((101, 101) if kind == "ws" else (200, 200))
        # the node must still serve (a stalled loop answers nothing)
        loop = asyncio.get_running_loop()
        health = await loop.run_in_executor(None, lambda: gw.get("/healthz", timeout=3).status)
        assert health == 200
        redis_server.start(redis_server.port)
        await async_wait_until(lambda: gw.readyz() == 200, 15, msg="ready again")

        def fcall_retry():
            r = redis_server.client()
            try:
                return int(wait_until(lambda: _try_fcall(r), 10, 0.05, msg="FCALL works"))
            finally:
                r.close()
        live = await loop.run_in_executor(None, fcall_retry)
        for c in (a, b):
            await async_wait_until(lambda c=c: live in c.ids, 10, msg="live message")
            assert c.ids == [live]
            c.abort()

    run(scenario(), 60)


def _try_fcall(r):
    try:
        return fcall(r, "news", {"data": "live"})
    except Exception:
        return None
