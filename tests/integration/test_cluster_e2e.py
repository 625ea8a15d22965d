"""End to end (issue 4): three nodes on one Redis, 300 clients (half WS, half
SSE) that reconnect to a remaining node with since= / Last-Event-ID when theirs
goes away, a publisher FCALLing 100 msg/s to broadcast.

1. Each node in turn is drained (SIGTERM, must exit 0) and started again on
   the same port: every client receives every message exactly once, in order.
2. Redis is killed and restarted empty on the same port mid-run: every
   message whose FCALL succeeded reaches every client exactly once, in order;
   the FCALLs made while Redis was away (or before a node had loaded the
   function into the new Redis) fail with an error, none is lost silently.
"""

import asyncio
import random
import time

from faultkit import Publisher, check_exact, fcall, nodes, open_stream, stop_ok  # noqa: F401
from pgtest import API_KEY, async_wait_until, run

N_CLIENTS = 300
RATE = 100
ARGS = ["--api-key", API_KEY, "--history-size", "5000", "--drain-timeout", "10"]


class Roamer:
    """A client that stays subscribed across node restarts: on losing its
    connection it reconnects to a node that is up, asking for what came after
    the last id it got (WS since=, SSE Last-Event-ID)."""

    def __init__(self, idx, kind, since):
        self.idx = idx
        self.kind = kind
        self.since = since
        self.ids = []
        self.notices = []
        self.reconnects = 0
        self.refused = 0
        self.conn = None
        self.connected = asyncio.Event()

    async def open(self, port):
        if self.kind == "ws":
            return await open_stream(port, "ws", f"since={self.since}")
        return await open_stream(port, "sse", last_event_id=str(self.since))

    def harvest(self):
        c = self.conn
        if c is None:
            return
        self.ids.extend(c.ids)
        self.notices.extend(c.notices)
        if c.last_id is not None:
            self.since = c.last_id
        self.conn = None

    async def run(self, cluster, stop, first_node):
        node = first_node
        rng = random.Random(self.idx)
        while not stop.is_set():
            try:
                c = await self.open(node.port)
            except (OSError, asyncio.TimeoutError):
                c = None
            if c is None or c.status not in (101, 200):
                if c is not None:
                    c.abort()
                self.refused += 1
                await asyncio.sleep(0.05)
                node = rng.choice(cluster.up)
                continue
            self.conn = c
            self.connected.set()
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait([c.done, stopper], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if stop.is_set():
                c.abort()
                self.harvest()
                return
            self.harvest()
            self.reconnects += 1
            node = rng.choice(cluster.up)


class Cluster:
    def __init__(self, gws):
        self.gws = gws
        self.up = list(gws)


async def start_roamers(gws, since, n=N_CLIENTS):
    cluster = Cluster(gws)
    stop = asyncio.Event()
    roamers = [Roamer(i, "ws" if i % 2 == 0 else "sse", since) for i in range(n)]
    tasks = []
    for r in roamers:
        tasks.append(asyncio.ensure_future(r.run(cluster, stop, gws[r.idx % len(gws)])))
        if r.idx % 20 == 19:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(asyncio.gather(*(r.connected.wait() for r in roamers)), 30)
    return cluster, stop, roamers, tasks


async def finish(roamers, stop, tasks, last, timeout=40):
    """Wait until every client holds the last id, stop them, collect."""
    def caught_up():
        return all((r.conn.last_id if r.conn and r.conn.last_id else r.since) >= last
                   for r in roamers)
    await async_wait_until(caught_up, timeout, 0.1, msg="every client has the last id")
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 20)


def test_each_node_restarted_in_turn_every_client_gets_everything_once(nodes, redis_server, rds):
    gws = [nodes(ARGS, name=f"node{k}") for k in range(3)]
    pub = Publisher(redis_server, "broadcast", rate=RATE)

    async def scenario():
        start = int(fcall(rds, "broadcast", {"event": "start", "data": None}))
        cluster, stop, roamers, tasks = await start_roamers(gws, start)
        pub.start()
        try:
            def published_more(n):
                base = len(pub.snapshot())
                return lambda: len(pub.snapshot()) >= base + n
            await async_wait_until(published_more(150), 10, 0.05, msg="publishing")
            loop = asyncio.get_running_loop()
            for gw in gws:
                cluster.up = [g for g in gws if g is not gw]
                t0 = time.monotonic()
                await loop.run_in_executor(None, stop_ok, gw)   # drains, exit 0
                drained_in = time.monotonic() - t0
                assert drained_in < 10, f"{gw.name} took {drained_in:.1f}s to drain"
                await loop.run_in_executor(None, gw.start)       # same port
                cluster.up = list(gws)
                await async_wait_until(published_more(150), 10, 0.05, msg="publishing")
        finally:
            pub.stop()
        assert not pub.failures, pub.failures[:3]
        published = pub.snapshot()
        await finish(roamers, stop, tasks, published[-1])
        expected = [i for i in published if i > start]
        assert len(expected) >= 500
        for r in roamers:
            check_exact(r.ids, expected, f"client {r.idx} ({r.kind}, "
                                         f"{r.reconnects} reconnects)")
            assert r.notices == [], f"client {r.idx}: recovery notice {r.notices}"
        moved = sum(r.reconnects for r in roamers)
        # every client of each restarted node had to move (once per restart
        # of the node it was on); a node's restart moves about a third
        assert moved >= N_CLIENTS * 0.9, f"only {moved} reconnects"

    run(scenario(), 120)


def test_redis_restart_mid_run_every_successful_fcall_is_delivered(nodes, redis_server, rds):
    gws = [nodes(ARGS, name=f"node{k}") for k in range(3)]
    pub = Publisher(redis_server, "broadcast", rate=RATE)

    async def scenario():
        start = int(fcall(rds, "broadcast", {"event": "start", "data": None}))
        cluster, stop, roamers, tasks = await start_roamers(gws, start)
        pub.start()
        try:
            await async_wait_until(lambda: len(pub.snapshot()) >= 150, 10, 0.05,
                                   msg="publishing")
            redis_server.kill9()
            await async_wait_until(lambda: len(pub.failures) >= 20, 10, 0.05,
                                   msg="FCALLs failing while Redis is away")
            redis_server.start(redis_server.port)
            n = len(pub.snapshot())
            await async_wait_until(lambda: len(pub.snapshot()) >= n + 200, 20, 0.05,
                                   msg="FCALLs succeeding again")
        finally:
            pub.stop()
        published = pub.snapshot()
        await finish(roamers, stop, tasks, published[-1])
        expected = [i for i in published if i > start]
        errors = {f[1].split("(")[0] for f in pub.failures}
        assert errors <= {"ConnectionError", "TimeoutError", "ResponseError",
                          "BusyLoadingError"}, errors
        for r in roamers:
            check_exact(r.ids, expected, f"client {r.idx} ({r.kind})")
            assert r.notices == [], f"client {r.idx}: recovery notice {r.notices}"
        for gw in gws:
            assert gw.readyz() == 200

    run(scenario(), 120)
