"""gateway/functions.lua in cluster mode (SPEC §10) against a real Redis
Cluster of three masters (clusterkit): the cluster names (<prefix>{C} with
SPUBLISH, <prefix>{C}:history carrying C's last id, <prefix>{_control} and
<prefix>{_control}:revoked), one-key forms only, and the one-key forms on
one Redis keeping the one-Redis names."""

import json
import time

import pytest
import redis as redis_py

from clusterkit import (PREFIX, ShardSubscriber, key_slot,  # noqa: F401
                        redis_cluster)
from pgtest import render_functions, wait_until

FN = "pushgate_"
CONTROL_ROUTE = PREFIX + "{_control}:revoked"


def hkey(ch):
    return f"{PREFIX}{{{ch}}}:history"


def publish(cluster, ch, payload):
    """The one-key publish, sent to the master that owns the key's slot, as
    a cluster client routes it."""
    return cluster.owner_of_key(hkey(ch)).execute_command(
        "FCALL", FN + "publish", 1, hkey(ch), ch, payload)


def history(cluster, ch, since):
    return cluster.owner_of_key(hkey(ch)).execute_command(
        "FCALL_RO", FN + "history", 1, hkey(ch), ch, str(since))


def control(cluster, fn, *args):
    return cluster.owner_of_key(CONTROL_ROUTE).execute_command(
        "FCALL", FN + fn, 1, CONTROL_ROUTE, *args)


@pytest.fixture(scope="module")
def cl(redis_cluster):
    redis_cluster.load_functions()
    return redis_cluster


def test_three_shards_each_keep_their_channels_history(cl):
    chans = cl.channels_on_shards(1, stem="three")
    assert len(chans) == 3, "three masters own slots"
    ids = {}
    for port, (ch,) in chans.items():
        ids[ch] = [publish(cl, ch, '{"data":%d}' % i) for i in range(3)]
    for port, (ch,) in chans.items():
        # C's stream, and nothing else of C, is stored on C's shard only
        # (KEYS lists a node's own keys; a key access would answer MOVED)
        for p in cl.masters():
            r = cl.client(p)
            assert r.keys(f"*{ch}*") == ([hkey(ch)] if p == port else [])
            assert r.keys(f"{PREFIX}seq") == [], "no cross-slot counter in a cluster"
        entries = cl.client(port).xrange(hkey(ch))
        assert [e[0] for e in entries] == [f"{i}-0" for i in ids[ch]]
        res = history(cl, ch, ids[ch][0])
        assert res[0] == 1
        assert res[1:] == [ids[ch][1], json.dumps({"data": 1, "id": ids[ch][1]},
                                                  separators=(",", ":")),
                           ids[ch][2], json.dumps({"data": 2, "id": ids[ch][2]},
                                                  separators=(",", ":"))]


def test_ssubscriber_on_the_owning_shard_receives_the_envelope(cl):
    chans = cl.channels_on_shards(2, stem="ssub")
    subs = {}
    try:
        for port, names in chans.items():
            s = subs[port] = ShardSubscriber(port)
            got = s.ssubscribe(*[PREFIX + "{" + c + "}" for c in names])
            assert [g[0] for g in got] == ["ssubscribe", "ssubscribe"]
        for port, names in chans.items():
            for ch in names:
                n = cl.client(port).execute_command(
                    "PUBSUB", "SHARDNUMSUB", PREFIX + "{" + ch + "}")
                assert n == [PREFIX + "{" + ch + "}", 1]
        for port, names in chans.items():
            for ch in names:
                rid = publish(cl, ch, '{"event":"e","data":[1]}')
                msg = subs[port].read()
                assert msg == ["smessage", PREFIX + "{" + ch + "}",
                               '{"event":"e","data":[1],"id":"' + rid + '"}']
        # each message crossed only its own shard
        for s in subs.values():
            assert s.poll(0.2) is None
    finally:
        for s in subs.values():
            s.close()


def test_plain_subscriber_gets_nothing_in_cluster_mode(cl):
    """A cluster publish is SPUBLISH: a classic SUBSCRIBE of the same name,
    even on the owning master, hears nothing."""
    ch = cl.channels_on_shards(1, stem="plain")[cl.masters()[0]][0]
    p = cl.owner_of_key(hkey(ch)).pubsub()
    try:
        p.subscribe(PREFIX + "{" + ch + "}", PREFIX + ch)
        for _ in range(2):
            assert p.get_message(timeout=2)["type"] == "subscribe"
        publish(cl, ch, "1")
        assert p.get_message(timeout=0.5) is None
    finally:
        p.close()


def test_ids_rise_per_channel_from_the_streams_last_id(cl):
    chans = cl.channels_on_shards(1, stem="ids")
    a, b = [v[0] for v in list(chans.values())[:2]]
    ids = [int(publish(cl, a, str(i))) for i in range(50)]
    assert ids == sorted(set(ids)), "strictly rising on one channel"
    # put a's last id far ahead of the clock, then trim every entry away:
    # the stream's last-generated-id still carries it
    ahead = ids[-1] + 10**12
    ra = cl.owner_of_key(hkey(a))
    ra.xadd(hkey(a), {"p": "x"}, id=f"{ahead}-0")
    ra.xtrim(hkey(a), maxlen=0)
    assert int(publish(cl, a, "next")) == ahead + 1
    # b keeps its own position: time-based, nowhere near a's
    assert int(publish(cl, b, "x")) < ahead


def test_control_orders_reach_a_sharded_subscriber(cl):
    port = cl.owner_port(key_slot(PREFIX + "{_control}"))
    assert port == cl.owner_port(key_slot(CONTROL_ROUTE))
    s1, s2 = ShardSubscriber(port), ShardSubscriber(port)
    try:
        for s in (s1, s2):
            s.ssubscribe(PREFIX + "{_control}")
        assert control(cl, "subscribe", "42", "room.7", "123") == 2
        want = '{"type":"subscribe","user":"42","channel":"room.7","since":"123"}'
        for s in (s1, s2):
            assert s.read() == ["smessage", PREFIX + "{_control}", want]
        assert control(cl, "unsubscribe", "42", "room.7") == 2
        for s in (s1, s2):
            assert json.loads(s.read()[2]) == {"type": "unsubscribe", "user": "42",
                                               "channel": "room.7"}
        assert control(cl, "disconnect", "42", '{"revoke":true,"reason":"bye"}') == 2
        r = cl.client(port)
        at = r.hget(PREFIX + "{_control}:revoked", "42")
        assert at is not None and at.isdigit()
        for p in cl.masters():
            assert cl.client(p).keys(PREFIX + "revoked") == []
        raw = s1.read()[2]
        assert json.loads(raw) == {"type": "disconnect", "user": "42", "code": 4003,
                                   "reason": "bye", "revoked_at": int(at)}
        assert s2.read()[2] == raw
    finally:
        s1.close()
        s2.close()


@pytest.mark.parametrize("fn,args", [
    ("publish", ["{ch}", "1"]),
    ("disconnect", ["42"]),
    ("subscribe", ["42", "{ch}"]),
    ("unsubscribe", ["42", "{ch}"]),
])
def test_zero_key_form_is_refused_in_cluster_mode(cl, fn, args):
    ch = cl.channels_on_shards(1, stem="zero")[cl.masters()[0]][0]
    args = [a.replace("{ch}", ch) for a in args]
    for p in cl.masters():
        with pytest.raises(redis_py.exceptions.ResponseError, match="only the one-key form"):
            cl.client(p).execute_command("FCALL", FN + fn, 0, *args)
        assert cl.client(p).keys(f"*{ch}*") == []
    with pytest.raises(redis_py.exceptions.ResponseError, match="only the one-key form"):
        cl.client(cl.masters()[0]).execute_command("FCALL_RO", FN + "history", 0, ch, "1")


def test_key_of_another_channel_or_kind_is_refused(cl):
    chans = cl.channels_on_shards(1, stem="wrong")
    a, b = [v[0] for v in list(chans.values())[:2]]
    # b's key routes to b's shard, which must not publish on a there
    rb = cl.owner_of_key(hkey(b))
    with pytest.raises(redis_py.exceptions.ResponseError, match="wrong key"):
        rb.execute_command("FCALL", FN + "publish", 1, hkey(b), a, "1")
    # a key of a's own slot but not its history: still refused
    ra = cl.owner_of_key(hkey(a))
    for k in (f"{PREFIX}{{{a}}}:presence", f"{PREFIX}{{{a}}}", CONTROL_ROUTE):
        if cl.owner_port(key_slot(k)) != cl.owner_port(key_slot(hkey(a))):
            continue  # the cluster itself answers MOVED before the function runs
        with pytest.raises(redis_py.exceptions.ResponseError, match="wrong key"):
            ra.execute_command("FCALL", FN + "publish", 1, k, a, "1")
    with pytest.raises(redis_py.exceptions.ResponseError, match="wrong key"):
        ra.execute_command("FCALL", FN + "disconnect", 1, hkey(a), "42")
    # and a key on another shard is the cluster's MOVED, nothing is written
    with pytest.raises(redis_py.exceptions.ResponseError, match="MOVED"):
        ra.execute_command("FCALL", FN + "publish", 1, hkey(b), b, "1")
    for p in cl.masters():
        assert cl.client(p).keys(f"*{{{a}}}*") == []
        assert cl.client(p).keys(f"*{{{b}}}*") == []


def test_raw_spublish_reaches_the_shard_subscriber(cl):
    """A live-only publish straight to Redis in cluster mode (SPEC §10)."""
    port, (ch,) = next(iter(cl.channels_on_shards(1, stem="raw").items()))
    s = ShardSubscriber(port)
    try:
        s.ssubscribe(PREFIX + "{" + ch + "}")
        assert cl.client(port).execute_command(
            "SPUBLISH", PREFIX + "{" + ch + "}", '{"data":"live"}') == 1
        assert s.read() == ["smessage", PREFIX + "{" + ch + "}", '{"data":"live"}']
    finally:
        s.close()


# One Redis: the one-key forms route nothing and keep the one-Redis names ----


def test_one_key_forms_on_one_redis_use_one_redis_names(rds):
    rds.execute_command("FUNCTION", "LOAD", "REPLACE", render_functions(PREFIX))
    p = rds.pubsub()
    try:
        p.subscribe(PREFIX + "c")
        assert p.get_message(timeout=2)["type"] == "subscribe"
        rid = rds.execute_command("FCALL", FN + "publish", 1, hkey("c"), "c", "1")
        assert rds.get(PREFIX + "seq") == rid
        assert rds.xlen(PREFIX + "history:c") == 1
        assert rds.exists(hkey("c")) == 0
        assert p.get_message(timeout=2)["data"] == '{"data":1,"id":"' + rid + '"}'
        res = rds.execute_command("FCALL_RO", FN + "history", 1, hkey("c"), "c", "0")
        assert res[1:] == [rid, '{"data":1,"id":"' + rid + '"}']
        assert res == rds.execute_command("FCALL_RO", FN + "history", 0, "c", "0")
        with pytest.raises(redis_py.exceptions.ResponseError, match="wrong key"):
            rds.execute_command("FCALL_RO", FN + "history", 1, hkey("d"), "c", "0")
    finally:
        p.close()


def test_readme_cluster_client_forms(cl):
    """The README's redis-cli -c and redis-py RedisCluster lines, as written
    there, against the cluster: each publish lands on the channel's shard."""
    from redis.cluster import RedisCluster as ClusterClient
    from clusterkit import sh
    port = cl.masters()[0]
    sub_port = cl.owner_port(key_slot(PREFIX + "{user:42}"))
    s = ShardSubscriber(sub_port)
    try:
        s.ssubscribe(PREFIX + "{user:42}")
        res = sh("redis-cli", "-c", "-h", "127.0.0.1", "-p", str(port), "SPUBLISH",
                 "pushgate:{user:42}", '{"data":1}')
        assert res.returncode == 0 and res.stdout.strip() == "1", res.stdout + res.stderr
        assert s.read() == ["smessage", "pushgate:{user:42}", '{"data":1}']
        res = sh("redis-cli", "-c", "-h", "127.0.0.1", "-p", str(port), "FCALL",
                 "pushgate_publish", "1", "pushgate:{user:42}:history", "user:42",
                 '{"event":"order.shipped","data":{"order":7}}')
        rid = res.stdout.strip()
        assert res.returncode == 0 and rid.isdigit(), res.stdout + res.stderr
        assert s.read()[2] == '{"event":"order.shipped","data":{"order":7},"id":"' + rid + '"}'

        payload = json.dumps({"event": "order.shipped", "data": {"order": 7}})
        rc = ClusterClient(host="127.0.0.1", port=port, decode_responses=True)
        try:
            msg_id = rc.fcall("pushgate_publish", 1, "pushgate:{user:42}:history", "user:42",
                              payload)
            assert msg_id.isdigit() and int(msg_id) > int(rid)
            assert json.loads(s.read()[2])["id"] == msg_id
            ch = "pushgate:{user:42}"
            assert rc.execute_command("SPUBLISH", ch, payload,
                                      target_nodes=rc.get_node_from_key(ch)) == 1
            assert s.read()[2] == payload
        finally:
            rc.close()
    finally:
        s.close()


# Presence, the gateway's own one-key calls (README "Presence", "In Redis Cluster")


def pkey(ch, kind="presence"):
    return f"{PREFIX}{{{ch}}}:{kind}"


def entry(user, node, conn):
    return json.dumps({"user": user, "node": node, "conn": conn, "info": None, "since": 1},
                      separators=(",", ":"))


def test_presence_calls_are_per_channel_scored_and_check_the_nodes_count(cl):
    a, b = [v[0] for v in list(cl.channels_on_shards(1, stem="pres").values())[:2]]
    r = cl.owner_of_key(pkey(a))

    def update(node, ttl, want, *ops, ch=a):
        return r.execute_command("FCALL", FN + "presence_update", 1, pkey(ch), node, ttl,
                                 want, *ops)

    def stats():
        return json.loads(r.execute_command("FCALL_RO", FN + "presence_stats", 1, pkey(a), a))

    assert update("n1", 60000, 2, "+", a, "1", entry("42", "n1", "1"),
                  "+", a, "2", entry("7", "n1", "2")) == 1
    assert stats() == {"clients": 2, "users": 2}
    score = r.zscore(pkey(a, "presence-nodes"), "n1")
    assert abs(score - (time.time() * 1000 + 60000)) < 5000
    # every key of a's presence expires by itself within a few ttl
    for kind in ("presence", "presence-count", "presence-users", "presence-nodes"):
        assert 0 < r.pttl(pkey(a, kind)) <= 3 * 60000
    # Redis holds another count than the node says: answered 0
    assert update("n1", 60000, 5, "-", a, "2") == 0
    assert stats() == {"clients": 1, "users": 1}
    # a beat of a: 1 when the count agrees, 0 when not
    beat = ("FCALL", FN + "presence_beat", 1, pkey(a), "n1", 60000, a)
    assert r.execute_command(*beat, 1) == 1
    assert r.execute_command(*beat, 2) == 0
    # a change of another channel, or another channel's key, is refused
    with pytest.raises(redis_py.exceptions.ResponseError, match="key's channel only"):
        update("n1", 60000, 2, "+", a, "3", entry("8", "n1", "3"), "+", b, "4", entry("8", "n1", "4"))
    with pytest.raises(redis_py.exceptions.ResponseError, match="wrong key"):
        r.execute_command("FCALL", FN + "presence_reset", 1, pkey(a), "n1", b)
    for fn, args in (("presence_update", ["n1", "+", a, "9", "{}"]),
                     ("presence_beat", ["n1", "60000"]), ("presence_reset", ["n1"])):
        with pytest.raises(redis_py.exceptions.ResponseError, match="only the one-key form"):
            r.execute_command("FCALL", FN + fn, 0, *args)
    assert stats() == {"clients": 1, "users": 1}
    assert cl.owner_of_key(pkey(b)).keys(f"*{{{b}}}*") == []

    # a node whose score lapses stops counting; a live node's beat sweeps it
    assert update("dead", 1, 1, "+", a, "5", entry("9", "dead", "5")) == 1
    # its 1 ms ttl does not shorten the life of the other nodes' entries
    for kind in ("presence", "presence-count", "presence-users", "presence-nodes"):
        assert r.pttl(pkey(a, kind)) > 60000
    wait_until(lambda: stats() == {"clients": 1, "users": 1}, timeout=2, msg="dead lapsed")
    assert r.hget(pkey(a, "presence-count"), "dead") == "1"
    assert r.execute_command(*beat, 1) == 1
    assert [f for f in r.hkeys(pkey(a)) if f.startswith("dead/")] == []
    assert r.hget(pkey(a, "presence-count"), "dead") is None
    assert "dead" not in r.zrange(pkey(a, "presence-nodes"), 0, -1)
    # reset drops the node's entries in a, and its score there
    assert r.execute_command("FCALL", FN + "presence_reset", 1, pkey(a), "n1", a) == 1
    assert stats() == {"clients": 0, "users": 0}
    assert r.keys(f"*{{{a}}}:presence*") == []
