"""gateway/shard.c (one sharded pub/sub link), gateway/topology.c (CLUSTER
SLOTS into a slot map) and common/pg_slot.c against a real Redis Cluster
(SPEC §10), through pg-shard-probe, a small C program that drives them line
by line (tests/integration/shard_probe.c): SSUBSCRIBE two channels of one
shard and receive what is SPUBLISHed, see the sunsubscribe Redis pushes when
a channel's slot moves (CLUSTER SETSLOT, and redis-cli --cluster reshard),
and subscribe again at the new owner."""

import random

import pytest

from clusterkit import (PREFIX, LineProcess, channel_in_slot, key_slot,  # noqa: F401
                        probe_bin, redis_cluster, sh)
from pgtest import free_port


@pytest.fixture
def probes():
    """probes(port, password=None) -> a running pg-shard-probe on that
    master; every probe must exit 0 (no leak under ASan) at teardown."""
    made = []

    def make(port, password=None):
        args = ["127.0.0.1", str(port)] + ([password] if password else [])
        p = LineProcess([probe_bin("pg-shard-probe", "PG_SHARD_PROBE")] + args)
        p.port = port
        made.append(p)
        return p
    try:
        yield make
    finally:
        codes = [(p.port, p.close(), p.stderr()) for p in made]
        assert all(rc == 0 for _, rc, _ in codes), f"probe exit codes: {codes}"


def chan(name):
    return f"{PREFIX}{{{name}}}"


def test_slot_of_key_matches_cluster_keyslot(redis_cluster, probes):
    port = redis_cluster.masters()[0]
    p = probes(port)
    p.expect_line("up")
    rnd = random.Random(12)
    keys = ["somekey", "foo{hash_tag}", "{user1000}.following", "foo{}{bar}",
            "foo{{bar}}zap", "{}", "}{", "{a}{b}", "x{", PREFIX + "{_control}"]
    alphabet = "abcXYZ019_-.:@{}"
    keys += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 20)))
             for _ in range(300)]
    r = redis_cluster.client(port)
    for k in keys:
        p.send(f"slot {k}")
        want = r.execute_command("CLUSTER", "KEYSLOT", k)
        assert p.expect(lambda ln: ln.startswith("slot ")) == f"slot {k} {want}"


def test_slot_map_from_cluster_slots_names_every_owner(redis_cluster, probes):
    port = redis_cluster.masters()[1]
    p = probes(port)
    p.expect_line("up")
    for slot in (0, 1, 5460, 5461, 10922, 10923, 16383, 777, 12345):
        p.send(f"owner {slot}")
        want = redis_cluster.owner_port(slot)
        assert p.expect(lambda ln: ln.startswith("owner ")) == \
            f"owner {slot} 127.0.0.1:{want} complete=1"


def test_two_channels_of_one_shard_receive_what_is_spublished(redis_cluster, probes):
    cl = redis_cluster
    port = cl.masters()[0]
    a, b = cl.channels_on_shards(2, stem="two")[port]
    assert key_slot(chan(a)) != key_slot(chan(b)), "two slots, one shard"
    p = probes(port)
    p.expect_line("up")
    p.send(f"sub {chan(a)}")
    p.send(f"sub {chan(b)}")
    p.expect_line(f"subscribed {chan(a)}")
    p.expect_line(f"subscribed {chan(b)}")
    r = cl.client(port)
    assert r.execute_command("PUBSUB", "SHARDNUMSUB", chan(a), chan(b)) == [chan(a), 1, chan(b), 1]
    for i in range(5):
        for c in (a, b):
            assert r.execute_command("SPUBLISH", chan(c), f'{{"data":{i}}}') == 1
    for i in range(5):
        for c in (a, b):
            p.expect_line(f'msg {chan(c)} {{"data":{i}}}')
    # a message of another shard's channel never crosses this link
    other = next(q for q in cl.masters() if q != port)
    (c2,) = cl.channels_on_shards(1, stem="two-other")[other]
    assert cl.client(other).execute_command("SPUBLISH", chan(c2), "x") == 0
    p.send(f"unsub {chan(a)}")
    p.expect_line(f"unsubscribed {chan(a)} asked")
    assert r.execute_command("SPUBLISH", chan(a), "gone") == 0
    assert r.execute_command("SPUBLISH", chan(b), "still") == 1
    p.expect_line(f"msg {chan(b)} still")
    p.nothing_more(lambda ln: ln.startswith("msg "))


def test_ssubscribe_at_a_master_not_owning_the_slot_is_moved(redis_cluster, probes):
    cl = redis_cluster
    here, there = cl.masters()[0], cl.masters()[2]
    (c,) = cl.channels_on_shards(1, stem="moved")[there]
    p = probes(here)
    p.expect_line("up")
    p.send(f"sub {chan(c)}")
    p.expect_line(f"error MOVED {key_slot(chan(c))} 127.0.0.1:{there}")
    # the link stays usable
    (mine,) = cl.channels_on_shards(1, stem="moved-mine")[here]
    p.send(f"sub {chan(mine)}")
    p.expect_line(f"subscribed {chan(mine)}")


def test_slot_moved_with_setslot_pushes_sunsubscribe_then_new_owner_delivers(redis_cluster, probes):
    cl = redis_cluster
    cl.load_functions()
    src, dst = cl.masters()[0], cl.masters()[1]
    moving, staying = cl.channels_on_shards(2, stem="mv")[src]
    slot = key_slot(chan(moving))
    hkey = f"{PREFIX}{{{moving}}}:history"
    first = cl.client(src).execute_command("FCALL", "pushgate_publish", 1, hkey, moving, "1")
    p = probes(src)
    p.expect_line("up")
    for c in (moving, staying):
        p.send(f"sub {chan(c)}")
        p.expect_line(f"subscribed {chan(c)}")

    cl.move_slot(slot, dst)
    p.expect_line(f"unsubscribed {chan(moving)} pushed", timeout=3)
    # the other channel of the old shard is untouched
    assert cl.client(src).execute_command("SPUBLISH", chan(staying), "s") == 1
    p.expect_line(f"msg {chan(staying)} s")
    # the slot map now names the new owner, and a link there delivers
    p.send(f"owner {slot}")
    p.expect_line(f"owner {slot} 127.0.0.1:{dst} complete=1")
    p.send(f"sub {chan(moving)}")
    p.expect_line(f"error MOVED {slot} 127.0.0.1:{dst}")
    q = probes(dst)
    q.expect_line("up")
    q.send(f"sub {chan(moving)}")
    q.expect_line(f"subscribed {chan(moving)}")
    second = cl.client(dst).execute_command("FCALL", "pushgate_publish", 1, hkey, moving, "2")
    q.expect_line(f'msg {chan(moving)} {{"data":2,"id":"{second}"}}')
    # the history moved with the slot: a replay from the first id finds the second
    res = cl.client(dst).execute_command("FCALL_RO", "pushgate_history", 1, hkey, moving, first)
    assert res[0] == 1 and res[1] == second
    assert int(second) > int(first)
    p.nothing_more(lambda ln: ln.startswith(f"msg {chan(moving)}"))


def test_slot_moved_by_redis_cli_reshard_pushes_sunsubscribe(redis_cluster, probes):
    cl = redis_cluster
    masters = cl.masters()
    src, dst = masters[2], masters[0]
    # redis-cli moves the source's lowest slots first
    lo = min(lo for (lo, _hi), p in cl.slot_map().items() if p == src)
    c = channel_in_slot(lo, stem="rs")
    p = probes(src)
    p.expect_line("up")
    p.send(f"sub {chan(c)}")
    p.expect_line(f"subscribed {chan(c)}")
    res = sh("redis-cli", "--cluster", "reshard", f"127.0.0.1:{src}",
             "--cluster-from", cl.node_id(src), "--cluster-to", cl.node_id(dst),
             "--cluster-slots", "1", "--cluster-yes")
    assert res.returncode == 0, res.stdout + res.stderr
    p.expect_line(f"unsubscribed {chan(c)} pushed", timeout=5)
    cl.wait_consistent()
    assert cl.owner_port(lo) == dst
    assert cl.client(dst).execute_command("PUBSUB", "SHARDNUMSUB", chan(c)) == [chan(c), 0]


def test_connection_killed_by_the_server_is_down_then_reconnects(redis_cluster, probes):
    cl = redis_cluster
    port = cl.masters()[1]
    (c,) = cl.channels_on_shards(1, stem="kill")[port]
    p = probes(port)
    p.expect_line("up")
    p.send(f"sub {chan(c)}")
    p.expect_line(f"subscribed {chan(c)}")
    r = cl.client(port)
    assert r.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    p.expect(lambda ln: ln.startswith("down "), what="down")
    p.send(f"sub {chan(c)}")
    p.expect_line(f"refused sub {chan(c)}")
    p.send("connect")
    p.expect_line("up")
    p.send(f"sub {chan(c)}")
    p.expect_line(f"subscribed {chan(c)}")
    assert r.execute_command("SPUBLISH", chan(c), "back") == 1
    p.expect_line(f"msg {chan(c)} back")


def test_connect_refused_and_auth_refused_are_down(redis_cluster, probes):
    p = probes(free_port())
    line = p.expect(lambda ln: ln.startswith("down "), what="down")
    assert "refused" in line.lower()
    # the cluster has no password: AUTH is refused and the link goes down
    q = probes(redis_cluster.masters()[0], password="nope")
    assert q.expect(lambda ln: ln in ("up",) or ln.startswith("down ")) == \
        "down AUTH refused (wrong user or password?)"



def test_failover_unsubscribes_at_the_old_master_and_the_replica_keeps_its_own(tmp_path, probes):
    """CLUSTER FAILOVER under a subscriber: the demoted master pushes
    sunsubscribe, while a link that subscribed at the replica keeps hearing
    the channel after the promotion (and heard it before, by replication)."""
    from clusterkit import RedisCluster
    cl = RedisCluster(tmp_path / "cluster-rep", masters=3, replicas=1)
    try:
        cl.start()
        master = cl.masters()[0]
        (c,) = cl.channels_on_shards(1, stem="fo")[master]
        replica = next(n.port for n in cl.nodes
                       if cl.client(n.port).info("replication").get("master_port") == master)
        old, new = probes(master), probes(replica)
        for p in (old, new):
            p.expect_line("up")
            p.send(f"sub {chan(c)}")
            p.expect_line(f"subscribed {chan(c)}")
        assert cl.client(master).execute_command("SPUBLISH", chan(c), "before") == 1
        for p in (old, new):
            p.expect_line(f"msg {chan(c)} before")
        assert cl.client(replica).execute_command("CLUSTER", "FAILOVER") == "OK"
        old.expect_line(f"unsubscribed {chan(c)} pushed", timeout=10)
        cl.wait_consistent()
        assert cl.owner_port(key_slot(chan(c))) == replica
        assert cl.client(replica).execute_command("SPUBLISH", chan(c), "after") == 1
        new.expect_line(f"msg {chan(c)} after")
        new.nothing_more(lambda ln: ln.startswith("unsubscribed"))
    finally:
        cl.stop()
