"""gateway/router.c against a real Redis Cluster (SPEC §10), through
pg-cluster-probe: one-key FCALLs routed to the master owning the key, the
function library loaded on every master the router talks to, MOVED and ASK
followed, so a channel publishing through a slot migration loses nothing."""

import threading

import pytest

from clusterkit import (PREFIX, LineProcess, channel_in_slot, key_slot,  # noqa: F401
                        probe_bin, redis_cluster, render_cluster_functions)
from pgtest import wait_until


def chan(name):
    return f"{PREFIX}{{{name}}}"


def hkey(name):
    return f"{PREFIX}{{{name}}}:history"


@pytest.fixture
def rprobe(tmp_path):
    """rprobe(*seed ports, refresh_ms=1000, history_size=1000) -> a running
    pg-cluster-probe whose router loads the cluster-mode library."""
    made = []

    def make(*ports, refresh_ms=1000, history_size=1000, env=None):
        lib = tmp_path / f"functions{len(made)}.lua"
        lib.write_text(render_cluster_functions(history_size=history_size))
        p = LineProcess([probe_bin("pg-cluster-probe", "PG_CLUSTER_PROBE"), str(refresh_ms),
                         str(lib)] + [f"127.0.0.1:{port}" for port in ports], env=env)
        made.append(p)
        return p
    try:
        yield make
    finally:
        codes = [(p.close(), p.stderr()) for p in made]
        assert all(rc == 0 for rc, _ in codes), f"probe exit codes: {codes}"


def wait_for_map(p):
    """Until the probe's first map read is done: a call is refused (no
    owner known) before it, and routed after."""
    def routed():
        p.send(f"call warm {hkey('warm')} PING")
        line = p.expect(lambda ln: ln.startswith(("reply warm ", "refused call warm")))
        return line == "reply warm str PONG"
    wait_until(routed, timeout=5, msg="a slot map")


def publish_line(tag, name, payload):
    return f"call {tag} {hkey(name)} FCALL pushgate_publish 1 {hkey(name)} {name} {payload}"


def replies(p, tags, timeout=10.0):
    """{tag: (kind, text)} for every tag. Answers from different masters
    come in any order, and lines read while waiting for something else are
    in p.seen: both are searched."""
    want, got = set(tags), {}

    def note(line):
        if line.startswith("reply "):
            _, tag, kind, text = line.split(" ", 3)
            if tag in want:
                got[tag] = (kind, text)
    for line in p.seen:
        note(line)
    while want - got.keys():
        note(p.expect(lambda ln: ln.startswith("reply "), timeout, f"replies {want - got.keys()}"))
    return got


def reply_of(p, tag, timeout=5.0):
    return replies(p, [tag], timeout)[tag]


def test_library_loaded_on_every_master_and_publish_routed_by_key(redis_cluster, rprobe):
    cl = redis_cluster
    for port in cl.masters():
        assert cl.client(port).execute_command("FUNCTION", "LIST") == []
    p = rprobe(cl.masters()[2])
    p.send("stats")
    p.expect(lambda ln: ln.startswith("stats "))
    chans = cl.channels_on_shards(1, stem="route")
    # the probe has no map until its first read: wait for it to take calls
    wait_for_map(p)
    ids = {}
    for port, (c,) in chans.items():
        p.send(publish_line(c, c, '{"data":1}'))
    got = replies(p, [c for (c,) in chans.values()])
    for c, (kind, text) in got.items():
        assert kind == "str" and text.isdigit(), (kind, text)
        ids[c] = text
    for port, (c,) in chans.items():
        r = cl.client(port)
        libs = r.execute_command("FUNCTION", "LIST", "LIBRARYNAME", "pushgate_lib")
        assert len(libs) == 1, f"library loaded on :{port}"
        assert r.keys(f"*{{{c}}}*") == [hkey(c)]
        assert [e[0] for e in r.xrange(hkey(c))] == [f"{ids[c]}-0"]
    # a function error comes back as the reply, not as a lost call
    c = next(iter(chans.values()))[0]
    p.send(f"call bad {hkey(c)} FCALL pushgate_publish 1 {hkey('other')} {c} x")
    assert reply_of(p, "bad") == ("err", "ERR wrong key for these arguments: need "
                                  "pushgate:{<channel>}:history")


def test_stale_map_is_corrected_by_moved(redis_cluster, rprobe):
    cl = redis_cluster
    src, dst = cl.masters()[1], cl.masters()[0]
    (c,) = cl.channels_on_shards(1, stem="stale")[src]
    # a map read every minute: only the MOVED can tell the probe
    p = rprobe(src, refresh_ms=60000)
    wait_for_map(p)
    p.send(publish_line("one", c, "1"))
    assert reply_of(p, "one")[0] == "str"
    cl.move_slot(key_slot(hkey(c)), dst)
    p.send(publish_line("two", c, "2"))
    kind, text = reply_of(p, "two")
    assert kind == "str", (kind, text)
    assert [e[0] for e in cl.client(dst).xrange(hkey(c))][-1] == f"{text}-0"


def test_publishing_through_a_slot_migration_loses_nothing(redis_cluster, rprobe):
    """20 msg/s and more on a channel while its slot moves (MIGRATING and
    IMPORTING, MIGRATE, SETSLOT NODE): every call answers with an id, ids
    rise, and the subscriber's live messages plus the history it is told to
    replay hold every one of them."""
    cl = redis_cluster
    src, dst = cl.masters()[2], cl.masters()[1]
    (c,) = cl.channels_on_shards(1, stem="busy")[src]
    p = rprobe(src)
    p.send(f"sub {chan(c)}")
    p.expect_line("ready 1")
    sent = []
    stop = threading.Event()

    def publisher():
        i = 0
        while not stop.is_set() and i < 2000:
            p.send(publish_line(f"m{i}", c, str(i)))
            sent.append(f"m{i}")
            i += 1
            stop.wait(0.02)

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    try:
        p.expect(lambda ln: ln.startswith(f"msg {chan(c)} "), what="a live message")
        cl.move_slot(key_slot(chan(c)), dst)
        p.expect_line(f"subscribed {chan(c)} resync=1", timeout=5)
        resync_at = len(p.seen)
        n = len(sent)
        wait_until(lambda: len(sent) >= n + 20, timeout=10, msg="20 more publishes")
    finally:
        stop.set()
        t.join(timeout=10)
    got = replies(p, sent)
    bad = {t: r for t, r in got.items() if r[0] != "str"}
    assert bad == {}, "every publish got an id through the move"
    ids = [int(got[t][1]) for t in sent]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "ids rise on the channel"
    live = [int(ln.split('"id":"')[1].split('"')[0]) for ln in p.seen
            if ln.startswith(f"msg {chan(c)} ")]
    before = [ln for ln in p.seen[:resync_at] if ln.startswith(f"msg {chan(c)} ")]
    last_before = int(before[-1].split('"id":"')[1].split('"')[0])
    hist = cl.client(dst).execute_command("FCALL_RO", "pushgate_history", 1, hkey(c), c,
                                          str(last_before))
    assert hist[0] == 1
    assert set(ids) <= set(live) | {int(i) for i in hist[1::2]}, "no gap after the replay"
    assert cl.client(dst).xlen(hkey(c)) == len(ids), "the whole history moved with the slot"


def test_ask_during_a_migration_is_followed_with_asking(redis_cluster, rprobe):
    """Mid-migration, the key already moved: the old owner answers ASK, and
    the call succeeds at the importing master after ASKING."""
    cl = redis_cluster
    src, dst = cl.masters()[0], cl.masters()[2]
    (c,) = cl.channels_on_shards(1, stem="ask")[src]
    slot = key_slot(hkey(c))
    p = rprobe(src)
    wait_for_map(p)
    p.send(publish_line("first", c, "1"))
    first = reply_of(p, "first")
    assert first[0] == "str"
    s, d = cl.client(src), cl.client(dst)
    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cl.node_id(src))
    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cl.node_id(dst))
    s.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", hkey(c))
    try:
        p.send(publish_line("second", c, "2"))
        kind, second = reply_of(p, "second")
        assert kind == "str", (kind, second)
        assert int(second) > int(first[1])
        assert s.keys(f"*{{{c}}}*") == []
    finally:
        d.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cl.node_id(dst))
        s.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cl.node_id(dst))
        cl.wait_consistent()
    # (read after the migration ends: an importing master answers MOVED
    # to anyone who does not say ASKING)
    assert [e[0] for e in d.xrange(hkey(c))] == [f"{first[1]}-0", f"{second}-0"]


def test_cluster_failover_under_load_loses_nothing(tmp_path, rprobe):
    """CLUSTER FAILOVER (a replica promoted on purpose, as in an upgrade)
    while a channel of that shard publishes at about 50 msg/s through the
    router: every publish is answered with an id, and live plus the
    announced replay hold every message."""
    from clusterkit import RedisCluster
    cl = RedisCluster(tmp_path / "cluster-fo", masters=3, replicas=1)
    try:
        cl.start()
        master = cl.masters()[1]
        (c,) = cl.channels_on_shards(1, stem="fo")[master]
        replica = next(n.port for n in cl.nodes
                       if cl.client(n.port).info("replication").get("master_port") == master)
        cl.load_functions(history_size=1000)
        p = rprobe(master)
        p.send(f"sub {chan(c)}")
        p.expect_line(f"subscribed {chan(c)} resync=0")
        sent, stop = [], threading.Event()

        def publisher():
            i = 0
            while not stop.is_set() and i < 2000:
                p.send(publish_line(f"f{i}", c, str(i)))
                sent.append(f"f{i}")
                i += 1
                stop.wait(0.02)

        t = threading.Thread(target=publisher, daemon=True)
        t.start()
        try:
            p.expect(lambda ln: ln.startswith(f"msg {chan(c)} "), what="a live message")
            assert cl.client(replica).execute_command("CLUSTER", "FAILOVER") == "OK"
            p.expect_line(f"subscribed {chan(c)} resync=1", timeout=10)
            resync_at = len(p.seen)
            n = len(sent)
            wait_until(lambda: len(sent) >= n + 20, timeout=10, msg="20 more publishes")
        finally:
            stop.set()
            t.join(timeout=10)
        got = replies(p, sent, timeout=20)
        bad = {k: v for k, v in got.items() if v[0] != "str"}
        assert bad == {}, "every publish got an id through the failover"
        ids = [int(got[k][1]) for k in sent]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert cl.owner_port(key_slot(chan(c)), port=replica) == replica
        live = {int(ln.split('"id":"')[1].split('"')[0]) for ln in p.seen
                if ln.startswith(f"msg {chan(c)} ")}
        before = [ln for ln in p.seen[:resync_at] if ln.startswith(f"msg {chan(c)} ")]
        last_before = int(before[-1].split('"id":"')[1].split('"')[0])
        hist = cl.client(replica).execute_command("FCALL_RO", "pushgate_history", 1, hkey(c),
                                                  c, str(last_before))
        assert hist[0] == 1
        assert set(ids) <= live | {int(i) for i in hist[1::2]}, "no gap after the replay"
    finally:
        cl.stop()


def test_redis_cli_reshard_of_a_busy_channel_loses_nothing(redis_cluster, rprobe):
    """The operator's way: redis-cli --cluster reshard moves the slot of a
    channel publishing at about 50 msg/s; every publish is answered, and
    live plus the announced replay hold every message."""
    cl = redis_cluster
    cl.load_functions(history_size=1000)
    src, dst = cl.masters()[1], cl.masters()[0]
    lo = min(lo for (lo, _hi), port in cl.slot_map().items() if port == src)
    c = channel_in_slot(lo, stem="cli")
    p = rprobe(src)
    p.send(f"sub {chan(c)}")
    p.expect_line(f"subscribed {chan(c)} resync=0")
    sent, stop = [], threading.Event()

    def publisher():
        i = 0
        while not stop.is_set() and i < 2000:
            p.send(publish_line(f"r{i}", c, str(i)))
            sent.append(f"r{i}")
            i += 1
            stop.wait(0.02)

    t = threading.Thread(target=publisher, daemon=True)
    t.start()
    try:
        p.expect(lambda ln: ln.startswith(f"msg {chan(c)} "), what="a live message")
        assert cl.reshard_lowest_slot(src, dst) == lo
        p.expect_line(f"subscribed {chan(c)} resync=1", timeout=5)
        resync_at = len(p.seen)
        n = len(sent)
        wait_until(lambda: len(sent) >= n + 20, timeout=10, msg="20 more publishes")
    finally:
        stop.set()
        t.join(timeout=10)
    got = replies(p, sent, timeout=20)
    assert {k: v for k, v in got.items() if v[0] != "str"} == {}
    ids = [int(got[k][1]) for k in sent]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    live = {int(ln.split('"id":"')[1].split('"')[0]) for ln in p.seen
            if ln.startswith(f"msg {chan(c)} ")}
    before = [ln for ln in p.seen[:resync_at] if ln.startswith(f"msg {chan(c)} ")]
    last_before = int(before[-1].split('"id":"')[1].split('"')[0])
    hist = cl.client(dst).execute_command("FCALL_RO", "pushgate_history", 1, hkey(c), c,
                                          str(last_before))
    assert hist[0] == 1
    assert set(ids) <= live | {int(i) for i in hist[1::2]}, "no gap after the replay"


# What a cluster node's ACL user needs beyond the one-Redis rule (README,
# "Redis Cluster" under "Redis topologies").
CLUSTER_ACL_EXTRA = "+ssubscribe +sunsubscribe +spublish +cluster|slots +asking"


def test_readme_cluster_acl_rule_runs_subscriber_and_router(tmp_path, rprobe):
    """A user holding exactly the README's ACL rule plus its cluster line
    subscribes on every shard, loads the library on every master, publishes
    and sends control orders through the router, and Redis' ACL LOG stays
    empty."""
    import pgtest
    from clusterkit import RedisCluster
    from sentinelkit import ACL_RULE
    readme = " ".join((pgtest.REPO / "README.md").read_text().split())
    assert CLUSTER_ACL_EXTRA in readme, "README's cluster ACL line differs from the tested one"
    rule = (ACL_RULE + " " + CLUSTER_ACL_EXTRA).split()
    cl = RedisCluster(tmp_path / "cluster-aclrule", masters=3, acl=("admin", "admin-pw"),
                      app_user=("pushgate", "s3cret", rule))
    try:
        cl.start()
        env = {"PG_PROBE_USER": "pushgate", "PG_PROBE_PASSWORD": "s3cret"}
        p = rprobe(cl.masters()[0], env=env)
        by_shard = cl.channels_on_shards(1, stem="rule")
        names = [c for (c,) in by_shard.values()]
        for c in names + ["_control"]:
            p.send(f"sub {chan(c)}")
        for _ in names + ["_control"]:
            p.expect(lambda ln: ln.startswith("subscribed "))
        wait_for_map(p)
        for c in names:
            p.send(publish_line(c, c, '{"data":1}'))
        got = replies(p, names)
        assert all(k == "str" for k, _ in got.values()), got
        # messages may have come while waiting for the replies: in p.seen
        msgs = [ln for ln in p.seen if ln.startswith("msg ")]
        while len(msgs) < len(names):
            msgs.append(p.expect(lambda ln: ln.startswith("msg ")))
        assert set(msgs) == {f'msg {chan(c)} {{"data":1,"id":"{got[c][1]}"}}' for c in names}
        route = f"{PREFIX}{{_control}}:revoked"
        p.send(f"call ctl {route} FCALL pushgate_disconnect 1 {route} 42 "
               '{"revoke":true}')
        assert reply_of(p, "ctl") == ("int", "1"), "the order reached the one subscriber"
        if not any(ln.startswith(f"msg {chan('_control')} ") for ln in p.seen):
            p.expect(lambda ln: ln.startswith(f"msg {chan('_control')} "))
        p.send(f"call hist {hkey(names[0])} FCALL_RO pushgate_history 1 {hkey(names[0])} "
               f"{names[0]} 0")
        assert reply_of(p, "hist")[0] == "arr"
        for port in cl.masters():
            assert cl.client(port).execute_command("ACL", "LOG") == [], f"ACL denials on :{port}"
    finally:
        cl.stop()
