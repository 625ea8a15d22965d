"""redis+sentinel:// (SPEC §10): the node asks any reachable sentinel where the
master is, checks ROLE before it uses a link, follows +switch-master and re-asks
on every disconnect, and never writes to a replica. Real redis-server and
sentinel processes on loopback (sentinelkit), ports picked at run time."""

import asyncio
import json
import os
import signal
import threading
import time

import pytest

import pgtest
from faultkit import open_stream
from pgtest import wait_until, async_wait_until
from sentinelkit import (MASTER_NAME, SwitchWatcher, acl_setuser,  # noqa: F401
                         sentinel_topology)

CH = "feed"
ARGS = ["--api-key", pgtest.API_KEY, "--public-topics", CH]


def numsub(node, channel=CH, prefix=pgtest.DEFAULT_PREFIX):
    return node.client().pubsub_numsub(prefix + channel)[0][1]


async def wait_subscribed(node, channel=CH):
    """The gateway's SUBSCRIBE for channel is in place at node."""
    await async_wait_until(lambda: numsub(node, channel) >= 1, timeout=10,
                           msg=f"{channel} subscribed at {node.name}")


def pubsub_links(node):
    """How many connections hold the gateway's probe/control patterns."""
    return node.client().execute_command("PUBSUB", "NUMPAT")


class ApiPublisher(threading.Thread):
    """POSTs {"n": k} to /api/publish every `period` s until stop(); records
    (n, id) of every 200 and the statuses of the others."""

    def __init__(self, gw, channel=CH, period=0.02):
        super().__init__(daemon=True)
        self.gw = gw
        self.channel = channel
        self.period = period
        self.acked = []       # (n, id)
        self.acked_at = []    # time.monotonic() of each ack
        self.refused = []     # (n, status or error)
        self.n = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        while not self.halt.is_set():
            self.n += 1
            try:
                r = self.gw.publish({"channel": self.channel, "data": {"n": self.n}},
                                    timeout=3)
                with self.lock:
                    if r.status == 200:
                        self.acked.append((self.n, int(r.json()["id"])))
                        self.acked_at.append(time.monotonic())
                    else:
                        self.refused.append((self.n, r.status))
            except OSError as e:
                with self.lock:
                    self.refused.append((self.n, repr(e)))
            self.halt.wait(self.period)

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def stop(self):
        self.halt.set()
        self.join(10)
        assert not self.is_alive()


def history_ids(node, gw, channel=CH):
    """Every id the node's history of channel holds (FCALL_RO history)."""
    rep = node.client().execute_command("FCALL_RO", f"{gw.fn}history", 0, channel, 0)
    return [int(json.loads(env)["id"]) for env in rep[2::2]]


def check_stream(ids, who):
    """Strictly increasing: no duplicate, no reordering."""
    bad = [(a, b) for a, b in zip(ids, ids[1:]) if b <= a]
    assert not bad, f"{who}: ids out of order or repeated at {bad[:5]}"


def test_sentinel_finds_the_master_from_any_reachable_sentinel(sentinel_topology,
                                                                gateway_factory):
    topo = sentinel_topology(replicas=1, sentinels=3)
    dead = pgtest.free_port()          # listed first, nobody listens there
    gw = gateway_factory(ARGS,
                         redis_url=topo.url(extra_hosts=[dead]))
    master, replica = topo.nodes[0], topo.nodes[1]

    async def main():
        c = await open_stream(gw.port, "ws", f"channels={CH}", keep=True)
        await wait_subscribed(master)
        r = gw.publish({"channel": CH, "data": {"n": 1}})
        assert r.status == 200, r
        await async_wait_until(lambda: c.ids, msg="the delivery")
        assert c.msgs[0]["data"] == {"n": 1}
        c.transport.close()
    pgtest.run(main())
    # Both links at the master, none at the replica: the subscriber's
    # patterns are there, and the publish landed in the master's history.
    assert pubsub_links(master) >= 2
    assert pubsub_links(replica) == 0
    assert len(history_ids(master, gw)) == 1
    log = gw.log()
    assert f"127.0.0.1:{dead}" in log      # it tried the dead one and moved on
    said = f"link=subscriber sentinel 127.0.0.1:{topo.sentinels[0].port} says master " \
           f"{MASTER_NAME} is at 127.0.0.1:{master.port}"
    assert log.count(said) == 1
    # Every reconnect asks again (from the Sentinel that answered last).
    master.client().client_kill_filter(_type="pubsub")
    wait_until(lambda: gw.log().count(said) == 2, timeout=10, msg="asked again")
    wait_until(lambda: gw.readyz() == 200 and pubsub_links(master) >= 2, timeout=10,
               msg="subscribed again")


def test_sentinel_pointing_at_a_replica_is_refused_by_role(sentinel_topology,
                                                           gateway_factory):
    """A sentinel whose answer is a replica (here: a stale monitor entry):
    ROLE says slave, so the node never uses that link, stays unready and
    says why; it becomes ready once the sentinels name a real master."""
    topo = sentinel_topology(replicas=1, sentinels=1, sentinel_kw={"quorum": 1})
    master, replica = topo.nodes[0], topo.nodes[1]
    s = topo.sentinels[0].client()
    # Make the one sentinel monitor the replica under our master name.
    s.execute_command("SENTINEL", "REMOVE", MASTER_NAME)
    s.execute_command("SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", replica.port, 1)
    gw = gateway_factory(ARGS, redis_url=topo.url(), ready=False)
    wait_until(lambda: "ROLE says slave" in gw.log(), timeout=10, msg="ROLE refusal logged")
    assert gw.readyz() == 503
    assert gw.publish({"channel": CH, "data": 1}).status == 503
    # nothing was ever written at the replica: no function library there
    assert replica.client().execute_command("FUNCTION", "LIST") == []
    s.execute_command("SENTINEL", "REMOVE", MASTER_NAME)
    s.execute_command("SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", master.port, 1)
    wait_until(lambda: gw.readyz() == 200, timeout=10, msg="ready at the real master")
    assert gw.publish({"channel": CH, "data": 1}).status == 200


class ReadyzWatcher(threading.Thread):
    """Polls /readyz every 20 ms; .seen is [(time.monotonic(), status)]."""

    def __init__(self, gw):
        super().__init__(daemon=True)
        self.gw = gw
        self.seen = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            self.seen.append((time.monotonic(), self.gw.readyz()))
            self.halt.wait(0.02)

    def first_200_after(self, t):
        return next((ts for ts, st in self.seen if ts >= t and st == 200), None)

    def statuses_between(self, t0, t1):
        return {st for ts, st in self.seen if t0 <= ts <= t1}

    def stop(self):
        self.halt.set()
        self.join(5)


def failover_under_load(topo, gw, trigger):
    """A WS client connected throughout and an API publisher at 50 msg/s;
    trigger() causes the failover. Returns what a report needs."""
    old = topo.master()
    watcher = SwitchWatcher(topo.sentinels[-1])
    watcher.start()
    readyz = ReadyzWatcher(gw)
    pub = ApiPublisher(gw)

    async def main():
        live = await open_stream(gw.port, "ws", f"channels={CH}", keep=True)
        await wait_subscribed(old)
        pub.start()
        await async_wait_until(lambda: pub.acked_count() >= 50, timeout=10,
                               msg="50 publishes before the failover")
        before = pub.acked[-1][1]          # an id acknowledged by the old master
        arrivals = {}                      # id -> when the live client had it

        async def stamp():
            seen = 0
            while True:
                now = time.monotonic()
                for i in live.ids[seen:]:
                    arrivals[i] = now
                seen = len(live.ids)
                await asyncio.sleep(0.005)
        stamper = asyncio.get_running_loop().create_task(stamp())
        readyz.start()
        t_trigger = time.monotonic()
        trigger(old)
        t_switch, new_port = await asyncio.get_running_loop().run_in_executor(
            None, watcher.wait_switch)
        new = topo.node(new_port)
        await async_wait_until(lambda: readyz.first_200_after(t_switch), timeout=10,
                               msg="/readyz 200 after the switch")
        n_after = pub.acked_count()
        await async_wait_until(lambda: pub.acked_count() >= n_after + 50, timeout=10,
                               msg="50 publishes after the failover")
        pub.stop()
        # A client resuming from an id the old master acknowledged.
        resumed = await open_stream(gw.port, "ws", f"channels={CH}&since={before}", keep=True)
        hist = history_ids(new, gw)
        want = [i for i in hist if i > before]
        await async_wait_until(lambda: hist[-1] in live.ids and hist[-1] in resumed.ids,
                               timeout=10, msg="the last message at both clients")
        stamper.cancel()
        live.transport.close()
        resumed.transport.close()
        return dict(arrivals=arrivals, live=live.ids, resumed=resumed.ids, hist=hist, want=want, old=old,
                    new=new, t_trigger=t_trigger, t_switch=t_switch, n_after=n_after)

    try:
        r = pgtest.run(main(), timeout=90)
    finally:
        readyz.stop()
        watcher.stop()
        pub.halt.set()
    r["readyz"] = readyz
    r["acked"] = list(pub.acked)
    r["acked_at"] = list(pub.acked_at)
    r["refused"] = list(pub.refused)
    return r


def check_failover(r, who):
    acked_ids = [i for _, i in r["acked"]]
    hist = set(r["hist"])
    lost = [i for i in acked_ids if i not in hist]
    # Every publish acknowledged after the node was ready at the new master
    # is in the new master's history (nothing written elsewhere).
    after = acked_ids[r["n_after"]:]
    assert set(after) <= hist, f"{who}: acknowledged after the failover but not at the new master"
    # The client connected throughout: no duplicate, no reordering, and every
    # message the new master holds (no gap), whether it arrived live or was
    # replayed after the reconnect.
    check_stream(r["live"], f"{who} live client")
    missing = sorted(hist - set(r["live"]))
    first = min(acked_ids)
    missing = [i for i in missing if i >= first]
    assert not missing, f"{who}: live client missed {len(missing)}: {missing[:5]}"
    # The client resuming with since= gets exactly the new master's history
    # after that id, in order.
    assert r["resumed"][:len(r["want"])] == r["want"], f"{who}: resumed client"
    check_stream(r["resumed"], f"{who} resumed client")
    # /readyz: 200 again within 2 s of the sentinels' announcement
    t200 = r["readyz"].first_200_after(r["t_switch"])
    lag = t200 - r["t_switch"]
    print(f"\n{who}: /readyz 200 {lag * 1000:.0f} ms after +switch-master "
          f"({(r['t_switch'] - r['t_trigger']) * 1000:.0f} ms trigger to switch); "
          f"{len(acked_ids)} acknowledged, {len(lost)} lost by asynchronous replication, "
          f"{len(r['refused'])} refused meanwhile")
    # the first publish accepted after the trigger at the new master, and
    # when the client connected throughout had it
    first = next(((t, i) for (_, i), t in zip(r["acked"], r["acked_at"])
                  if t > r["t_trigger"] + 0.05 and i in hist), None)
    if first is not None and first[1] in r["arrivals"] and not r["old"].alive():
        print(f"{who}: first publish accepted {first[0] - r['t_trigger']:.2f} s after the "
              f"trigger, delivered {r['arrivals'][first[1]] - r['t_trigger']:.2f} s after it")
    assert lag <= 2.0, f"{who}: ready {lag:.2f} s after the switch"
    # the node's links are at the new master, none at the old one
    assert pubsub_links(r["new"]) >= 2
    if r["old"].alive():
        wait_until(lambda: pubsub_links(r["old"]) == 0, timeout=5,
                   msg="no gateway pattern left at the old master")
    return lost


def test_sentinel_failover_is_followed_without_gap_or_duplicate(sentinel_topology,
                                                                gateway_factory):
    topo = sentinel_topology(replicas=1, sentinels=3)
    gw = gateway_factory(ARGS + ["--history-size", "5000"], redis_url=topo.url())
    r = failover_under_load(topo, gw, lambda old: topo.failover())
    check_failover(r, "SENTINEL FAILOVER")
    assert r["new"].role() == "master"
    wait_until(lambda: r["old"].role() == "slave", timeout=10, msg="old master demoted")


def test_sentinel_master_kill9_is_followed_without_gap_or_duplicate(sentinel_topology,
                                                                    gateway_factory):
    # two replicas: one is promoted, the other must be moved to it
    topo = sentinel_topology(replicas=2, sentinels=3)
    gw = gateway_factory(ARGS + ["--history-size", "5000"], redis_url=topo.url())
    r = failover_under_load(topo, gw, lambda old: old.kill9())
    check_failover(r, "kill -9 of the master")
    # no master between the kill and the switch: the node said so
    assert 503 in r["readyz"].statuses_between(r["t_trigger"] + 0.2, r["t_switch"])


def test_sentinel_with_acl_user_and_sentinel_password(sentinel_topology, gateway_factory):
    """The URL's user is for the data nodes (with the README's rights, ROLE
    included), ?sentinel-password= for the Sentinels; a failover keeps
    working with both. A wrong sentinel password: unready, says why."""
    topo = sentinel_topology(replicas=1, sentinels=3, sentinel_kw={"requirepass": "s-pw"})
    for n in topo.nodes:                 # ACL users are not replicated
        acl_setuser(n.client(), "pg", "pg-pw")
    gw = gateway_factory(ARGS, redis_url=topo.url(creds="pg:pg-pw@", query="sentinel-password=s-pw"))
    assert gw.publish({"channel": CH, "data": 1}).status == 200
    t = time.monotonic()
    old = topo.master()
    topo.failover()
    wait_until(lambda: topo.master_port() != old.port, timeout=15, msg="failover")
    wait_until(lambda: gw.readyz() == 200 and
               gw.publish({"channel": CH, "data": 2}).status == 200, timeout=10,
               msg="publishing at the new master")
    assert len(history_ids(topo.master(), gw)) == 2
    print(f"\nready at the new master {time.monotonic() - t:.2f} s after SENTINEL FAILOVER")
    for n in topo.nodes:
        assert not n.client().execute_command("ACL", "LOG"), f"{n.name} denied something"

    bad = gateway_factory(ARGS, redis_url=topo.url(creds="pg:pg-pw@", query="sentinel-password=no"),
                          ready=False)
    wait_until(lambda: "AUTH failed" in bad.log(), timeout=10, msg="the Sentinels' refusal logged")
    assert bad.readyz() == 503 and bad.alive()
    own = "\n".join(ln for ln in bad.log().splitlines() if not ln.startswith("### "))
    assert "s-pw" not in own and "pg-pw" not in own


def test_demoted_master_that_keeps_its_connections_is_left(sentinel_topology, gateway_factory):
    """The master is demoted without closing a connection (a healed
    partition, a manual REPLICAOF) and replicates nothing, so its pub/sub
    hears nothing published at the new master, and no +switch-master comes.
    The command link's ROLE re-check sees it within a second, finds the new
    master, and the subscriber follows it there: re-subscribed, and what was
    published at the new master meanwhile is replayed."""
    topo = sentinel_topology(replicas=1, sentinels=1, sentinel_kw={"quorum": 1})
    a, b = topo.nodes
    s = topo.sentinels[0].client()
    gw = gateway_factory(ARGS, redis_url=topo.url())

    async def main():
        live = await open_stream(gw.port, "ws", f"channels={CH}", keep=True)
        await wait_subscribed(a)
        r = gw.publish({"channel": CH, "data": {"n": 1}})
        assert r.status == 200
        await async_wait_until(lambda: live.ids, msg="first delivery")
        # the replica has the library the node loaded at the master
        # (replication is asynchronous), or the FCALL below cannot run there
        await async_wait_until(lambda: b.client().execute_command("FUNCTION", "LIST") != [],
                               msg="function library replicated")
        # Out of the Sentinel's sight: swap the roles by hand.
        s.execute_command("SENTINEL", "REMOVE", MASTER_NAME)
        b.client().execute_command("REPLICAOF", "NO", "ONE")
        a.client().execute_command("REPLICAOF", "127.0.0.1", str(pgtest.free_port()))
        t0 = time.monotonic()
        # published at the new master, by a service that already moved
        raw = int(b.client().execute_command("FCALL", f"{gw.fn}publish", 0, CH,
                                             json.dumps({"data": {"n": 2}})))
        s.execute_command("SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", b.port, 1)
        await async_wait_until(lambda: pubsub_links(a) == 0 and pubsub_links(b) >= 2,
                               timeout=10, msg="both links at the new master")
        moved = time.monotonic() - t0
        await async_wait_until(lambda: gw.readyz() == 200, timeout=10, msg="ready")
        r3 = gw.publish({"channel": CH, "data": {"n": 3}})
        assert r3.status == 200
        await async_wait_until(lambda: int(r3.json()["id"]) in live.ids, msg="third delivery")
        assert live.ids == [int(r.json()["id"]), raw, int(r3.json()["id"])]
        live.transport.close()
        return moved
    moved = pgtest.run(main())
    print(f"\nlinks left the demoted master {moved:.2f} s after the swap")
    assert "demoted (ROLE says slave)" in gw.log()
    # well before the liveness probe would have fired (25 s quiet + 5 s)
    assert moved < 6


def test_a_frozen_sentinel_costs_one_timeout(sentinel_topology, gateway_factory):
    """A Sentinel that accepts connections but never answers (SIGSTOP) is
    given up after its query timeout, and the next one answers: the node is
    ready, and after a link drop it is ready again, about as fast."""
    topo = sentinel_topology(replicas=1, sentinels=3)
    frozen = topo.sentinels[0]
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        gw = gateway_factory(ARGS, redis_url=topo.url())
        took = time.monotonic() - t0
        assert "no answer in time" in gw.log()
        print(f"\nready {took:.2f} s after start with the first Sentinel frozen")
        assert took < 5, f"ready after {took:.1f} s"
        # the next locate starts at the Sentinel that answered, not the frozen one
        master = topo.master()
        master.client().client_kill_filter(_type="pubsub")
        t1 = time.monotonic()
        wait_until(lambda: pubsub_links(master) >= 2 and gw.readyz() == 200, timeout=10,
                   msg="ready again")
        assert time.monotonic() - t1 < 2
        assert gw.log().count("no answer in time") == 2   # once per data link, at start
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
