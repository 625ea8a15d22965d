"""gateway/cluster.c against a real Redis Cluster (SPEC §10), through
pg-cluster-probe (tests/integration/cluster_probe.c): a node's wanted
channels discovered from one seed and kept subscribed at their slot's owner,
one link per master; a slot moved under load is subscribed again at the new
owner and announced for a history replay that leaves no gap; a master killed
with -9 is followed to the promoted replica."""

import os
import signal
import threading
import time

import pytest
import redis as redis_py

from clusterkit import (PREFIX, LineProcess, RedisCluster, key_slot,  # noqa: F401
                        probe_bin, redis_cluster)
from pgtest import wait_until


@pytest.fixture
def cprobes():
    """cprobes(*seed ports, refresh_ms=1000) -> a running pg-cluster-probe;
    each must exit 0 at teardown (no leak under ASan)."""
    made = []

    def make(*ports, refresh_ms=1000, env=None):
        p = LineProcess([probe_bin("pg-cluster-probe", "PG_CLUSTER_PROBE"), str(refresh_ms), "-"]
                        + [f"127.0.0.1:{port}" for port in ports], env=env)
        made.append(p)
        return p
    try:
        yield make
    finally:
        codes = [(p.close(), p.stderr()) for p in made]
        assert all(rc == 0 for rc, _ in codes), f"probe exit codes: {codes}"


def chan(name):
    return f"{PREFIX}{{{name}}}"


def hkey(name):
    return f"{PREFIX}{{{name}}}:history"


def test_channels_on_three_shards_one_link_per_master_from_one_seed(redis_cluster, cprobes):
    cl = redis_cluster
    by_shard = cl.channels_on_shards(2, stem="three")
    p = cprobes(cl.masters()[1])
    names = [c for cs in by_shard.values() for c in cs]
    for c in names:
        p.send(f"sub {chan(c)}")
    got = {p.expect(lambda ln: ln.startswith("subscribed ")) for _ in names}
    assert got == {f"subscribed {chan(c)} resync=0" for c in names}
    p.expect_line("ready 1")
    p.send("stats")
    p.expect_line(f"stats channels={len(names)} links=3 pending=0")
    for port, cs in by_shard.items():
        for c in cs:
            # each message crosses only its own shard: one subscriber there
            assert cl.client(port).execute_command("PUBSUB", "SHARDNUMSUB", chan(c)) == [chan(c), 1]
            assert cl.client(port).execute_command("SPUBLISH", chan(c), f"to {c}") == 1
    # links of different shards have no common order: compare as a set
    got = {p.expect(lambda ln: ln.startswith("msg ")) for _ in names}
    assert got == {f"msg {chan(c)} to {c}" for c in names}
    gone = names[0]
    p.send(f"unsub {chan(gone)}")
    p.send("stats")
    p.expect_line(f"stats channels={len(names) - 1} links=3 pending=0")
    owner = cl.owner_port(key_slot(chan(gone)))
    # the SUNSUBSCRIBE leaves with the probe's next write
    wait_until(lambda: cl.client(owner).execute_command(
        "PUBSUB", "SHARDNUMSUB", chan(gone)) == [chan(gone), 0], msg="SUNSUBSCRIBE done")
    assert cl.client(owner).execute_command("SPUBLISH", chan(gone), "late") == 0
    p.nothing_more(lambda ln: ln.startswith(f"msg {chan(gone)}"))


@pytest.mark.parametrize("flips", [1, 2])
def test_channel_dropped_and_wanted_again_before_its_confirmation(redis_cluster, cprobes, flips):
    """A channel unsubscribed and subscribed again (once or twice) in one go,
    before Redis confirmed its first SSUBSCRIBE (a user's only connection
    flapping). The confirmations of the dropped SSUBSCRIBEs are not taken
    for the last one's: it is announced once, and then it is subscribed at
    its owner and delivers. (Taken early, a resumer's history read could run
    between Redis's SUNSUBSCRIBE and the new SSUBSCRIBE; over-eager, the
    channel would never be confirmed and the node never ready.)"""
    cl = redis_cluster
    p = cprobes(cl.masters()[0])
    p.send(f"sub {chan('steady')}")
    p.expect_line(f"subscribed {chan('steady')} resync=0")
    p.expect_line("ready 1")
    # on the master whose link is up: its SSUBSCRIBE goes at once
    owner = cl.owner_port(key_slot(chan("steady")))
    name = next(chan(f"flap{k}") for k in range(1000)
                if cl.owner_port(key_slot(chan(f"flap{k}"))) == owner)
    p.proc.stdin.write(f"sub {name}\n" + f"unsub {name}\nsub {name}\n" * flips)
    p.proc.stdin.flush()
    p.expect_line(f"subscribed {name} resync=0")
    p.expect_line("ready 1")
    p.nothing_more(lambda ln: ln.startswith(f"subscribed {name}"), wait=0.5)
    assert cl.client(owner).execute_command("PUBSUB", "SHARDNUMSUB", name) == [name, 1]
    assert cl.client(owner).execute_command("SPUBLISH", name, "after") == 1
    p.expect_line(f"msg {name} after")
    p.send("stats")
    p.expect_line("stats channels=2 links=1 pending=0")


class Publisher(threading.Thread):
    """FCALLs pushgate_publish (one-key form) on one channel at about rate/s,
    following MOVED and ASK as a cluster client does, and records every id
    that Redis returned."""

    def __init__(self, cl, name, rate=50):
        super().__init__(daemon=True)
        self.cl, self.name, self.rate = cl, name, rate
        self.ids, self.errors = [], []
        self.halt = threading.Event()

    def _call(self, port, asking=False):
        r = self.cl.client(port)
        if asking:
            pipe = r.pipeline(transaction=False)
            pipe.execute_command("ASKING")
            pipe.execute_command("FCALL", "pushgate_publish", 1, hkey(self.name), self.name,
                                 str(len(self.ids)))
            return pipe.execute()[1]
        return r.execute_command("FCALL", "pushgate_publish", 1, hkey(self.name), self.name,
                                 str(len(self.ids)))

    def run(self):
        port = self.cl.owner_port(key_slot(hkey(self.name)))
        while not self.halt.is_set():
            asking = False
            for _ in range(5):
                try:
                    self.ids.append(self._call(port, asking))
                    break
                except redis_py.exceptions.ResponseError as e:
                    kind, _slot, addr = (str(e).split() + ["", "", ""])[:3]
                    if kind not in ("MOVED", "ASK"):
                        self.errors.append(str(e))
                        break
                    port, asking = int(addr.rsplit(":", 1)[1]), kind == "ASK"
            time.sleep(1 / self.rate)


def test_slot_moved_under_load_is_resubscribed_and_history_fills_the_gap(redis_cluster, cprobes):
    cl = redis_cluster
    cl.load_functions(history_size=1000)
    src, dst = cl.masters()[0], cl.masters()[2]
    moving, staying = cl.channels_on_shards(2, stem="load")[src]
    p = cprobes(cl.masters()[0])
    for c in (moving, staying):
        p.send(f"sub {chan(c)}")
    p.expect_line("ready 1")
    pub = Publisher(cl, moving)
    pub.start()
    try:
        # let some messages arrive live over the old owner first
        p.expect(lambda ln: ln.startswith(f"msg {chan(moving)} "), what="a live message")
        cl.move_slot(key_slot(chan(moving)), dst)
        p.expect_line(f"subscribed {chan(moving)} resync=1", timeout=5)
        resync_at = len(p.seen)
        # and live again over the new owner
        p.expect(lambda ln: ln.startswith(f"msg {chan(moving)} "), what="live after the move")
        n = len(pub.ids)
        wait_until(lambda: len(pub.ids) >= n + 20, timeout=10, msg="20 more publishes")
    finally:
        pub.halt.set()
        pub.join(timeout=10)
    assert pub.errors == []
    assert len(pub.ids) > 20
    p.send("stats")
    p.expect(lambda ln: ln.startswith("stats "))
    live = [ln.split(" ", 2)[2] for ln in p.seen if ln.startswith(f"msg {chan(moving)} ")]
    live_ids = [int(env.split('"id":"')[1].split('"')[0]) for env in live]
    before = [i for i, ln in enumerate(p.seen[:resync_at])
              if ln.startswith(f"msg {chan(moving)} ")]
    last_before = live_ids[len(before) - 1]
    # what the node's recovery does on resync: history after the last id it
    # delivered before the subscription was lost, from the new owner
    hist = cl.client(dst).execute_command("FCALL_RO", "pushgate_history", 1, hkey(moving),
                                          moving, str(last_before))
    assert hist[0] == 1, "history reaches back"
    replayed = {int(i) for i in hist[1::2]}
    published = {int(i) for i in pub.ids}
    assert published <= set(live_ids) | replayed, "no gap once history is replayed"
    assert sorted(published) == [int(i) for i in pub.ids], "ids rise on the channel"
    # the other channel of the old shard never lost its subscription
    assert f"subscribed {chan(staying)} resync=1" not in p.seen


def test_master_killed_is_followed_to_the_promoted_replica(tmp_path, cprobes):
    cl = RedisCluster(tmp_path / "cluster-kill", masters=3, replicas=1)
    try:
        cl.start()
        victim = cl.masters()[0]
        (c,) = cl.channels_on_shards(1, stem="kill")[victim]
        # the only seed is the master about to die: the probe must follow
        # the masters it learnt from the map
        p = cprobes(victim, refresh_ms=500)
        p.send(f"sub {chan(c)}")
        p.expect_line(f"subscribed {chan(c)} resync=0")
        p.expect_line("ready 1")
        node = cl.node_by_port(victim)
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait(timeout=10)
        p.expect_line("ready 0", timeout=5)
        t0 = time.monotonic()
        live = next(n.port for n in cl.nodes if n.alive())
        # node timeout 2 s, then the election; SPEC §10: subscribed at the
        # new owner within 2 s of the promotion
        new = wait_until(lambda: (lambda o: o if o != victim else None)(
            cl.owner_port(key_slot(chan(c)), port=live)), timeout=20, interval=0.05,
            msg="a replica promoted")
        promoted = time.monotonic()
        p.expect_line(f"subscribed {chan(c)} resync=1", timeout=20)
        assert time.monotonic() - promoted < 2.0, "resubscribed within 2 s of the promotion"
        p.expect_line("ready 1")
        took = time.monotonic() - t0
        assert cl.client(new).execute_command("SPUBLISH", chan(c), "after") == 1
        p.expect_line(f"msg {chan(c)} after")
        print(f"resubscribed at the promoted replica {took:.1f}s after the kill")
    finally:
        cl.stop()


def test_twenty_thousand_channels_in_and_out(redis_cluster, cprobes):
    """A node holding a user channel per connection wants tens of thousands
    of channels: they are all subscribed at their owners in seconds, and half
    of them left in any order keeps the others findable."""
    cl = redis_cluster
    n = 20000
    names = [f"u{i}" for i in range(n)]
    p = cprobes(cl.masters()[0])
    p.proc.stdin.write("".join(f"sub {chan(c)}\n" for c in names))
    p.proc.stdin.flush()
    # ("ready 1" may also be the empty start: count the confirmations)
    t0 = time.monotonic()
    for _ in range(n):
        p.expect(lambda ln: ln.startswith("subscribed "), timeout=30, what="subscribed")
    took = time.monotonic() - t0
    p.send("stats")
    p.expect_line(f"stats channels={n} links=3 pending=0")
    print(f"{n} channels subscribed in {took:.1f}s")
    counts = [cl.client(port).execute_command("PUBSUB", "SHARDCHANNELS", f"{PREFIX}{{u*")
              for port in cl.masters()]
    assert sum(len(x) for x in counts) == n
    assert all(len(x) > n // 5 for x in counts), "spread over the three masters"
    rnd = __import__("random").Random(7)
    gone = set(rnd.sample(names, n // 2))
    p.proc.stdin.write("".join(f"unsub {chan(c)}\n" for c in names if c in gone))
    p.proc.stdin.flush()
    p.send("stats")
    p.expect_line(f"stats channels={n - len(gone)} links=3 pending=0", timeout=10)
    wait_until(lambda: sum(len(cl.client(port).execute_command(
        "PUBSUB", "SHARDCHANNELS", f"{PREFIX}{{u*")) for port in cl.masters()) == n - len(gone),
        timeout=10, msg="every SUNSUBSCRIBE done")
    for c in rnd.sample(names, 60):
        owner = cl.owner_port(key_slot(chan(c)))
        want = 0 if c in gone else 1
        assert cl.client(owner).execute_command("SPUBLISH", chan(c), "x") == want, c
        if want:
            p.expect_line(f"msg {chan(c)} x")
    again = sorted(gone)[:5]
    for c in again:
        p.send(f"sub {chan(c)}")
        p.expect_line(f"subscribed {chan(c)} resync=0")


def test_acl_user_subscribes_everywhere_and_a_wrong_password_never_gets_ready(tmp_path, cprobes):
    """redis+cluster://user:password@... : every link (map reads included)
    authenticates as the ACL user on every master; with a wrong password
    nothing is subscribed, nothing is ready, and the probe still exits
    cleanly."""
    cl = RedisCluster(tmp_path / "cluster-acl", masters=3, acl=("pushgate", "s3cret"))
    try:
        cl.start()
        by_shard = cl.channels_on_shards(1, stem="acl")
        names = [c for (c,) in by_shard.values()]
        good = cprobes(cl.masters()[0], env={"PG_PROBE_USER": "pushgate",
                                             "PG_PROBE_PASSWORD": "s3cret"})
        for c in names:
            good.send(f"sub {chan(c)}")
        got = {good.expect(lambda ln: ln.startswith("subscribed ")) for _ in names}
        assert got == {f"subscribed {chan(c)} resync=0" for c in names}
        for port, (c,) in by_shard.items():
            assert cl.client(port).execute_command("SPUBLISH", chan(c), "ok") == 1
        got = {good.expect(lambda ln: ln.startswith("msg ")) for _ in names}
        assert got == {f"msg {chan(c)} ok" for c in names}

        bad = cprobes(cl.masters()[0], env={"PG_PROBE_USER": "pushgate",
                                            "PG_PROBE_PASSWORD": "wrong"})
        bad.send(f"sub {chan(names[0])}")
        bad.nothing_more(lambda ln: ln.startswith(("subscribed", "ready 1")), wait=2.0)
        owner = cl.owner_port(key_slot(chan(names[0])))
        assert cl.client(owner).execute_command("PUBSUB", "SHARDNUMSUB", chan(names[0])) == \
            [chan(names[0]), 1], "only the good probe is subscribed"
    finally:
        cl.stop()


def test_lost_link_resubscribes_its_channels_only(redis_cluster, cprobes):
    """A shard link cut by the server (CLIENT KILL): its channels come back
    with resync=1 on a new link; the other shards' channels never notice."""
    cl = redis_cluster
    by_shard = cl.channels_on_shards(2, stem="cut")
    victim = cl.masters()[2]
    p = cprobes(cl.masters()[0])
    names = [c for cs in by_shard.values() for c in cs]
    for c in names:
        p.send(f"sub {chan(c)}")
    for _ in names:
        p.expect(lambda ln: ln.startswith("subscribed "))
    assert cl.client(victim).execute_command("CLIENT", "KILL", "TYPE", "pubsub") == 1
    back = {p.expect(lambda ln: ln.startswith("subscribed "), timeout=5) for _ in by_shard[victim]}
    assert back == {f"subscribed {chan(c)} resync=1" for c in by_shard[victim]}
    p.expect_line("ready 1")
    p.nothing_more(lambda ln: ln.startswith("subscribed "), wait=0.5)
    for port, cs in by_shard.items():
        for c in cs:
            assert cl.client(port).execute_command("SPUBLISH", chan(c), "still") == 1
    got = {p.expect(lambda ln: ln.startswith("msg ")) for _ in names}
    assert got == {f"msg {chan(c)} still" for c in names}
