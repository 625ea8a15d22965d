"""Reconnect storms (issue 13, SPEC 4 Recovery): connections that resume the
same channel in a burst share one history read per channel, from the lowest
since among them, and later stragglers are served from its result kept in
memory; each connection still gets exactly the ids after its own since, in
order, no gap and no duplicate at the seam with the live stream.

What a user sees is checked on real redis-server and pushgate processes:
every client's ids, and on Redis's own side the number of history reads
(INFO commandstats: the gateway reads history with FCALL_RO and nothing
else it does here uses it), next to the node's pushgate_history_reads_total."""

import asyncio
import random

from faultkit import check_exact, fcall, open_stream
from pgtest import API_KEY, async_wait_until, metric_value, run

BASE = ["--api-key", API_KEY, "--public-topics", "news", "--history-size", "1000"]


def history_reads(rds):
    """FCALL_RO calls Redis has served so far."""
    return int(rds.info("commandstats").get("cmdstat_fcall_ro", {}).get("calls", 0))


def node_reads(gw):
    m = gw.metrics()
    return (metric_value(m, "pushgate_history_reads_total") or 0,
            metric_value(m, "pushgate_history_reads_coalesced_total") or 0)


def publish(rds, channel, n):
    return [int(fcall(rds, channel, {"data": {"n": k}})) for k in range(n)]


async def resume_all(gw, sinces, query=""):
    """Open one WebSocket per since, all at once; returns the clients."""
    clients = await asyncio.gather(*[
        open_stream(gw.port, "ws", f"since={s}{query}", timeout=20) for s in sinces])
    for c in clients:
        assert c.status == 101, c.status
    return clients


async def caught_up(clients, last, msg):
    await async_wait_until(lambda: all(c.last_id == last for c in clients), 30,
                           msg=f"{msg}: every client at {last}")


def test_storm_of_200_resumers_shares_a_few_reads(gateway_factory, rds):
    """200 clients resume broadcast at once, each from its own point among
    300 missed messages: each gets exactly what it missed, then the live
    stream, and Redis serves a few history reads, not 200."""
    gw = gateway_factory(BASE)
    ids = publish(rds, "broadcast", 300)
    rng = random.Random(13)
    sinces = [ids[rng.randrange(0, 250)] for _ in range(200)]
    before = history_reads(rds)
    reads0, coalesced0 = node_reads(gw)

    async def scenario():
        clients = await resume_all(gw, sinces)
        await caught_up(clients, ids[-1], "history")
        live = int(fcall(rds, "broadcast", {"data": "live"}))
        await caught_up(clients, live, "live")
        for s, c in zip(sinces, clients):
            assert c.notices == [], f"since={s}: unexpected recovery notice"
            check_exact(c.ids, [i for i in ids if i > s] + [live], f"since={s}")
            c.abort()

    run(scenario(), 90)
    reads = history_reads(rds) - before
    # Each resumer's read would be 200. A burst is gathered per loop
    # iteration and a lower since than the read out needs its own read, so
    # a few go; the node's counter agrees with Redis.
    print(f"history reads for 200 resumers: {reads}")
    assert 1 <= reads <= 10, f"{reads} history reads for 200 resumers"
    r, co = node_reads(gw)
    assert r - reads0 == reads, (r, reads0, reads)
    assert co - coalesced0 == 200 - reads, (co, coalesced0, reads)


def test_straggler_served_from_memory_exactly(gateway_factory, rds):
    """After a burst, one that resumes later (its since covered, the channel
    still busy) costs no read and still gets every id after its since, the
    ones published live since the burst's read included, then the live
    stream once."""
    gw = gateway_factory(BASE)
    ids = publish(rds, "broadcast", 50)

    async def scenario():
        first = await resume_all(gw, [ids[10], ids[20]])
        await caught_up(first, ids[-1], "burst")
        more = publish(rds, "broadcast", 5)         # live, recorded by the window
        await caught_up(first, more[-1], "burst live")
        before = history_reads(rds)
        late = (await resume_all(gw, [ids[5]] + [ids[30]]))
        # ids[5] is older than the burst's lowest since: it needs a read;
        # ids[30] is covered: none
        await caught_up(late, more[-1], "stragglers")
        assert history_reads(rds) - before == 1
        live = int(fcall(rds, "broadcast", {"data": "live"}))
        await caught_up(first + late, live, "live")
        everything = ids + more + [live]
        for s, c in zip([ids[10], ids[20], ids[5], ids[30]], first + late):
            check_exact(c.ids, [i for i in everything if i > s], f"since={s}")
            assert c.notices == []
            c.abort()

    run(scenario(), 60)


def test_channel_left_and_rejoined_is_read_again(gateway_factory, rds):
    """A kept result stops being used once the node unsubscribes the channel:
    what is published while nobody on the node listens is not in it, and a
    later resumer must still get it (so the node reads again)."""
    gw = gateway_factory(BASE)
    ids = publish(rds, "news", 10)

    async def scenario():
        (a,) = await resume_all(gw, [ids[2]], "&channels=news")
        await caught_up([a], ids[-1], "first")
        a.abort()
        await async_wait_until(
            lambda: (metric_value(gw.metrics(), "pushgate_subscribed_channels") or 0) == 1,
            10, msg="the node to unsubscribe news")
        missed = publish(rds, "news", 3)            # nobody on the node listens
        before = history_reads(rds)
        (b,) = await resume_all(gw, [ids[5]], "&channels=news")
        await caught_up([b], missed[-1], "second")
        check_exact(b.ids, [i for i in ids + missed if i > ids[5]], "rejoined")
        assert history_reads(rds) - before == 1
        b.abort()

    run(scenario(), 60)
