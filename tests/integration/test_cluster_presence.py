"""Events (SPEC §9) and presence (SPEC §8) on a real three-master Redis
Cluster (SPEC §10, README "Redis Cluster"): the events stream is the one
key <prefix>{_events} on the shard that owns it; a channel's presence keys
live beside its pub/sub channel and history in the {C} slot, and a node's
liveness in C is its score in {C}:presence-nodes, pushed forward by one
beat per channel it has entries in. What a backend sees is asserted: XRANGE
on the owning master, the one-key FCALL forms at the channel's owner, and
GET /api/presence[/stats] on the node."""

import json
import os
import signal
import time

import pytest
import redis as redis_py

import pgtest
from clusterkit import PREFIX, RedisCluster, key_slot, redis_cluster  # noqa: F401
from pgtest import API_KEY, async_wait_until, mint_hs256, run, ws_connect
from test_core import close_all

SECRET = "s"
TTL = 3
ARGS = ["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous",
        "--public-topics", "room*,ev*", "--presence-topics", "room*",
        "--presence-ttl", str(TTL), "--events"]
EVENTS = PREFIX + "{_events}"


def token(sub, **claims):
    claims["sub"] = sub
    return mint_hs256(SECRET, claims)


@pytest.fixture
def cnodes(tmp_path, redis_cluster):
    """cnodes(node_id, args=()) -> a started Gateway on the module's
    cluster (seeded with one master); each must exit 0 on SIGTERM at
    teardown unless the test killed it."""
    made = []

    def make(node_id, args=(), cl=None):
        """cl: another cluster than the module's; seeded with all its nodes"""
        ports = [n.port for n in cl.nodes] if cl else redis_cluster.masters()[:1]
        seeds = ",".join(f"127.0.0.1:{p}" for p in ports)
        gw = pgtest.Gateway(None, tmp_path / node_id, args=ARGS + ["--node-id", node_id] +
                            list(args), name=node_id,
                            redis_url="redis+cluster://" + seeds)
        made.append(gw)
        return gw.start()
    try:
        yield make
    finally:
        bad = pgtest.stop_gateways(made)
        assert not bad, "node(s) did not exit 0 after SIGTERM:\n" + "\n".join(bad)


def events_master(cl):
    """The redis-py client of the master that owns {_events}, as the
    cluster itself answers (CLUSTER KEYSLOT + the slot map)."""
    any_master = cl.client(cl.masters()[0])
    slot = int(any_master.execute_command("CLUSTER", "KEYSLOT", EVENTS))
    return cl.client(cl.owner_port(slot))


# --------------------------------------------------------------------------
# Events


def test_events_land_in_the_one_stream_on_its_owner_and_send_is_answered_sent(
        redis_cluster, cnodes):
    cl = redis_cluster
    gw = cnodes("ev1")
    owner = events_master(cl)
    owner.delete(EVENTS)
    # the other masters hold no events stream of any name
    for p in cl.masters():
        if cl.client(p) is not owner:
            assert cl.client(p).keys(f"{PREFIX}*events*") == []
    chans = [cs[0] for cs in cl.channels_on_shards(1, stem="ev").values()]

    async def body():
        c = await ws_connect(gw, "token=" + token("42") + "&channels=" + chans[0])
        try:
            await c.send_json({"type": "subscribe", "channel": chans[1]})
            assert (await c.recv_json())["type"] == "subscribed"
            await c.send_json({"type": "send", "data": {"text": "hi", "n": [1, 2]},
                               "ref": "r1"})
            sent = await c.recv_json()
            assert sent["type"] == "sent" and sent["ref"] == "r1", sent
            await c.send_json({"type": "unsubscribe", "channel": chans[1]})
            assert (await c.recv_json())["type"] == "unsubscribed"
            await c.close()
            await async_wait_until(lambda: owner.xlen(EVENTS) >= 6, msg="six events")
            out = owner.xrange(EVENTS)
            types = [(f["type"], f.get("channel")) for _, f in out]
            assert types == [("connect", None), ("subscribe", chans[0]),
                             ("subscribe", chans[1]), ("message", None),
                             ("unsubscribe", chans[1]), ("disconnect", None)], out
            for _, f in out:
                assert f["node"] == "ev1" and f["user"] == "42" and f["conn"].isdigit()
                assert f["ts"].isdigit()
            assert out[3][0] == sent["id"]
            assert json.loads(out[3][1]["data"]) == {"text": "hi", "n": [1, 2]}
            assert out[5][1]["code"] == "1000" and out[5][1]["reason"] == ""
        finally:
            await close_all(c)

    run(body())


# --------------------------------------------------------------------------
# Presence


def pkey(ch, kind="presence"):
    return f"{PREFIX}{{{ch}}}:{kind}"


def owner(cl, ch):
    return cl.owner_of_key(pkey(ch))


def presence(cl, ch):
    """FCALL pushgate_presence in the one-key form, at C's owner."""
    return json.loads(owner(cl, ch).fcall("pushgate_presence", 1, pkey(ch), ch))


def stats(cl, ch):
    return json.loads(owner(cl, ch).fcall("pushgate_presence_stats", 1, pkey(ch), ch))


def api(gw, path, ch):
    r = pgtest.http_request(gw.port, "GET", f"/api/{path}?channel={ch}",
                            {"Authorization": "Bearer " + API_KEY})
    assert r.status == 200, r
    return r.json()


def node_fields(cl, ch, node):
    return [f for f in owner(cl, ch).hkeys(pkey(ch)) if f.rsplit("/", 1)[0] == node]


async def wait_stats(cl, ch, want, timeout=5.0):
    await async_wait_until(lambda: stats(cl, ch) == want, timeout,
                           msg=f"stats of {ch} == {want} (last {stats(cl, ch)})")


def rooms(cl, stem):
    """One presence topic per master, so that every shard holds some."""
    return [cs[0] for cs in cl.channels_on_shards(1, stem=stem).values()]


def test_who_is_here_and_stats_on_three_shards_through_fcall_and_the_api(
        redis_cluster, cnodes):
    cl = redis_cluster
    n1, n2 = cnodes("pa1"), cnodes("pa2")
    r = rooms(cl, "rooma")
    info = {"name": "Ann", "tags": ["a", 1]}

    async def body():
        a1 = await ws_connect(n1, "token=" + token("42", info=info) + "&channels=" + ",".join(r))
        a2 = await ws_connect(n2, "token=" + token("42", info=info) + "&channels=" + r[0])
        b = await ws_connect(n2, "token=" + token("7") + "&channels=" + ",".join(r))
        anon = await ws_connect(n1, "channels=" + r[1])
        try:
            await wait_stats(cl, "user:42", {"clients": 2, "users": 1})
            await wait_stats(cl, r[0], {"clients": 3, "users": 2})
            await wait_stats(cl, r[1], {"clients": 3, "users": 2})
            await wait_stats(cl, r[2], {"clients": 2, "users": 2})
            entries = presence(cl, "user:42")
            assert sorted(e["node"] for e in entries) == ["pa1", "pa2"]
            for e in entries:
                assert e["user"] == "42" and e["info"] == info and e["conn"].isdigit()
                assert abs(e["since"] - time.time() * 1000) < 60_000
            assert sorted(str(e["user"]) for e in presence(cl, r[1])) == ["42", "7", "None"]
            assert stats(cl, "user:7") == {"clients": 1, "users": 1}
            # each room's presence lives on its own shard only
            for ch in r:
                for p in cl.masters():
                    keys = cl.client(p).keys(f"{PREFIX}{{{ch}}}:presence*")
                    if cl.client(p) is owner(cl, ch):
                        assert pkey(ch) in keys and pkey(ch, "presence-nodes") in keys
                    else:
                        assert keys == []
            # the API of either node answers what the function answers
            for gw in (n1, n2):
                for ch in r + ["user:42"]:
                    assert api(gw, "presence/stats", ch) == stats(cl, ch)
                    assert sorted(api(gw, "presence", ch)["clients"], key=json.dumps) == \
                        sorted(presence(cl, ch), key=json.dumps)
            # the zero-key form has no shard to go to
            with pytest.raises(Exception, match="one-key form"):
                owner(cl, r[0]).fcall("pushgate_presence_stats", 0, r[0])

            # unsubscribe and close are removed at once
            await b.send_json({"type": "unsubscribe", "channel": r[2]})
            await wait_stats(cl, r[2], {"clients": 1, "users": 1})
            await a2.close()
            await wait_stats(cl, "user:42", {"clients": 1, "users": 1})
            await wait_stats(cl, r[0], {"clients": 2, "users": 2})
            await a1.close()
            await wait_stats(cl, "user:42", {"clients": 0, "users": 0})
            await wait_stats(cl, r[1], {"clients": 2, "users": 1})
            assert not owner(cl, "user:42").exists(pkey("user:42"))
            assert not owner(cl, "user:42").exists(pkey("user:42", "presence-nodes"))
        finally:
            await close_all(a1, a2, b, anon)

    run(body())


def test_join_and_leave_reach_a_topics_subscribers_from_another_node(redis_cluster, cnodes):
    cl = redis_cluster
    n1, n2 = cnodes("pj1"), cnodes("pj2")
    r = rooms(cl, "roomj")

    async def body():
        watcher = await ws_connect(n1, "token=" + token("1") + "&channels=" + ",".join(r))
        try:
            # its own joins, one per channel; shards keep no order between them
            own = [await watcher.recv_json() for _ in r]
            assert sorted((m["channel"], m["event"], m["data"]["user"]) for m in own) == \
                sorted((ch, "pushgate.join", "1") for ch in r)
            c = await ws_connect(n2, "token=" + token("9", info={"i": 1}) + "&channels=" +
                                 ",".join(r))
            await c.close()
            seen = []
            while len(seen) < 6:
                m = await watcher.recv_json()
                assert "id" not in m, f"join/leave must be live-only: {m}"
                seen.append((m["channel"], m["event"], m["data"]["user"], m["data"]["info"]))
            for ch in r:   # per channel, in order
                assert [s[1:] for s in seen if s[0] == ch] == [
                    ("pushgate.join", "9", {"i": 1}), ("pushgate.leave", "9", {"i": 1})]
        finally:
            await close_all(watcher)

    run(body())


def test_killed_node_stops_counting_within_ttl_and_a_live_beat_sweeps_it(
        redis_cluster, cnodes):
    cl = redis_cluster
    n1, n2 = cnodes("pk1"), cnodes("pk2")
    r = rooms(cl, "roomk")

    async def body():
        both = ",".join(r)
        a = await ws_connect(n1, "token=" + token("k42") + "&channels=" + both)
        b = await ws_connect(n2, "token=" + token("k42") + "&channels=" + both)
        c = await ws_connect(n2, "token=" + token("k43") + "&channels=" + both)
        try:
            for ch in r:
                await wait_stats(cl, ch, {"clients": 3, "users": 2})
            await wait_stats(cl, "user:k43", {"clients": 1, "users": 1})
            n2.proc.send_signal(signal.SIGKILL)
            n2.proc.wait(10)
            killed = time.monotonic()
            # within the ttl its entries no longer count, on every shard
            for ch in r:
                await wait_stats(cl, ch, {"clients": 1, "users": 1}, timeout=TTL + 1)
            await wait_stats(cl, "user:k42", {"clients": 1, "users": 1}, timeout=1)
            await wait_stats(cl, "user:k43", {"clients": 0, "users": 0}, timeout=1)
            assert time.monotonic() - killed <= TTL + 0.5
            for ch in r:
                assert [e["node"] for e in presence(cl, ch)] == ["pk1"]
                assert api(n1, "presence/stats", ch) == {"clients": 1, "users": 1}
            # a live node's beat of each channel sweeps the dead one's entries
            for ch in r + ["user:k42"]:
                await async_wait_until(lambda ch=ch: node_fields(cl, ch, "pk2") == [],
                                       timeout=TTL, msg=f"pk2's fields in {ch} swept")
                assert node_fields(cl, ch, "pk1") != []
                assert owner(cl, ch).hget(pkey(ch, "presence-count"), "pk2") is None
                assert "pk2" not in owner(cl, ch).zrange(pkey(ch, "presence-nodes"), 0, -1)
            # user:43 had pk2 alone: nobody beats it, its keys expire by themselves
            assert 0 < owner(cl, "user:k43").pttl(pkey("user:k43")) <= 3 * TTL * 1000
        finally:
            await close_all(a, b, c)

    run(body())


def test_drain_removes_the_nodes_entries_at_once_and_stats_stay_exact(redis_cluster, cnodes):
    cl = redis_cluster
    n1, n2 = cnodes("pd1", ["--presence-ttl", "60"]), cnodes("pd2", ["--presence-ttl", "60"])
    r = rooms(cl, "roomd")

    async def body():
        both = ",".join(r)
        a = await ws_connect(n1, "token=" + token("d42") + "&channels=" + both)
        b = await ws_connect(n2, "token=" + token("d42") + "&channels=" + both)
        c = await ws_connect(n2, "token=" + token("d43") + "&channels=" + r[0])
        d = await ws_connect(n1, "token=" + token("d44") + "&channels=" + r[0])
        try:
            await wait_stats(cl, r[0], {"clients": 4, "users": 3})
            for ch in r[1:]:
                await wait_stats(cl, ch, {"clients": 2, "users": 1})
            await wait_stats(cl, "user:d42", {"clients": 2, "users": 1})
            assert n2.stop(signal.SIGTERM) == 0
            # the node is gone: nothing of it may be left, not even dead
            for ch in r + ["user:d42"]:
                assert node_fields(cl, ch, "pd2") == []
                assert "pd2" not in owner(cl, ch).zrange(pkey(ch, "presence-nodes"), 0, -1)
            assert not owner(cl, "user:d43").exists(pkey("user:d43")), (
                owner(cl, "user:d43").hgetall(pkey("user:d43")),
                owner(cl, "user:d43").zrange(pkey("user:d43", "presence-nodes"), 0, -1, withscores=True),
                pgtest.tail(n2.logfile, 30))
            assert stats(cl, r[0]) == {"clients": 2, "users": 2}
            assert stats(cl, r[1]) == {"clients": 1, "users": 1}
            assert stats(cl, "user:d42") == {"clients": 1, "users": 1}
        finally:
            await close_all(a, b, c, d)

    run(body())


def test_new_users_do_not_make_the_node_start_over(redis_cluster, cnodes):
    """Each new user is a new channel, and the node's subscriber is not
    ready until that channel's SSUBSCRIBE is confirmed. Ready again must not
    count as the command side coming back: that re-read the revocations,
    asked Redis's clock and rewrote every presence entry of the node, three
    times per user connecting. The node logs each revocations load."""
    cl = redis_cluster
    gw = cnodes("cu1")
    r = rooms(cl, "roomc")

    def loads():
        return gw.log().count(" revocations")

    async def body():
        conns = [await ws_connect(gw, "token=" + token("c0") + "&channels=" + r[0])]
        try:
            await wait_stats(cl, r[0], {"clients": 1, "users": 1})
            await async_wait_until(lambda: gw.readyz() == 200, 5, msg="ready")
            before = loads()
            for k in range(1, 11):
                conns.append(await ws_connect(gw, f"token={token(f'c{k}')}&channels={r[0]}"))
                await wait_stats(cl, r[0], {"clients": k + 1, "users": k + 1})
                await async_wait_until(lambda: gw.readyz() == 200, 5, msg="ready again")
            assert loads() == before, gw.log()[-3000:]
        finally:
            await close_all(*conns)

    run(body())


def test_entries_lost_on_a_shard_are_written_again_by_the_next_beat(redis_cluster, cnodes):
    """What a failover with asynchronous replication can do to a channel's
    presence (the promoted replica never got the last writes), done by hand:
    the keys of one channel vanish; the node's next beat of it finds Redis
    holding another number of its entries and writes the channel again."""
    cl = redis_cluster
    n1 = cnodes("pl1")
    r = rooms(cl, "rooml")

    async def body():
        a = await ws_connect(n1, "token=" + token("l42", info={"x": 1}) + "&channels=" +
                             ",".join(r))
        b = await ws_connect(n1, "token=" + token("l43") + "&channels=" + r[0])
        try:
            await wait_stats(cl, r[0], {"clients": 2, "users": 2})
            before = sorted(json.dumps(e, sort_keys=True) for e in presence(cl, r[0]))
            # gone, as the stats read in the same transaction shows (a beat
            # may write them back right after: that is the point)
            tx = owner(cl, r[0]).pipeline(transaction=True)
            tx.delete(pkey(r[0]), pkey(r[0], "presence-count"),
                      pkey(r[0], "presence-users"), pkey(r[0], "presence-nodes"))
            tx.execute_command("FCALL", "pushgate_presence_stats", 1, pkey(r[0]), r[0])
            assert json.loads(tx.execute()[1]) == {"clients": 0, "users": 0}
            await wait_stats(cl, r[0], {"clients": 2, "users": 2}, timeout=TTL / 3 + 2)
            assert sorted(json.dumps(e, sort_keys=True) for e in presence(cl, r[0])) == before
            # a stray entry of ours that the node does not hold goes too
            owner(cl, r[1]).fcall("pushgate_presence_update", 1, pkey(r[1]), "pl1", 60000, 2,
                                  "+", r[1], "999999", '{"user":"5","node":"pl1"}')
            await async_wait_until(lambda: node_fields(cl, r[1], "pl1") == [
                f for f in node_fields(cl, r[1], "pl1") if not f.endswith("/999999")],
                timeout=TTL / 3 + 2, msg="the stray entry removed by the next beat")
            assert stats(cl, r[1]) == {"clients": 1, "users": 1}
        finally:
            await close_all(a, b)

    run(body())


@pytest.fixture
def cluster_with_replicas(tmp_path):
    c = RedisCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=2000)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_a_failover_that_lost_a_channels_presence_gets_it_written_again(
        cluster_with_replicas, cnodes):
    """kill -9 of the master owning a room whose replica missed the last
    join (it was stopped for a moment: what asynchronous replication can
    lose): once the replica is promoted the node is ready again and the
    room's presence is exact at the new master."""
    cl = cluster_with_replicas
    victim = cl.masters()[0]
    room = cl.channels_on_shards(1, stem="roomf")[victim][0]
    gw = cnodes("pf1", cl=cl)
    rnode = next(n for n in cl.nodes
                 if cl.client(n.port).info("replication").get("master_port") == victim)
    # one connection, READONLY: a replica answers MOVED to reads otherwise
    replica = redis_py.Redis(host="127.0.0.1", port=rnode.port, decode_responses=True,
                             single_connection_client=True, socket_timeout=5)
    replica.execute_command("READONLY")

    async def body():
        a = await ws_connect(gw, "token=" + token("f1", info={"k": 1}) + "&channels=" + room)
        b = None
        try:
            await wait_stats(cl, room, {"clients": 1, "users": 1})
            await async_wait_until(lambda: replica.hlen(pkey(room)) == 1, msg="replicated")
            # stopped, and its link cut by the master: what the master takes
            # now never reaches it (bytes already sent would, after SIGCONT)
            os.kill(rnode.proc.pid, signal.SIGSTOP)
            try:
                cl.client(victim).execute_command("CLIENT", "KILL", "TYPE", "replica")
                b = await ws_connect(gw, "token=" + token("f2") + "&channels=" + room)
                await wait_stats(cl, room, {"clients": 2, "users": 2})
                before = sorted(json.dumps(e, sort_keys=True) for e in presence(cl, room))
                slot = key_slot(pkey(room))
                cl.node_by_port(victim).kill9()
            finally:
                os.kill(rnode.proc.pid, signal.SIGCONT)

            def promoted():
                try:
                    return cl.owner_port(slot, rnode.port) == rnode.port
                except Exception:  # noqa: BLE001 - a node mid-failover
                    return False
            await async_wait_until(promoted, timeout=20, interval=0.05, msg="replica promoted")
            await async_wait_until(lambda: gw.readyz() == 200, timeout=20, msg="ready again")
            await async_wait_until(
                lambda: sorted(json.dumps(e, sort_keys=True) for e in presence(cl, room)) ==
                before, timeout=TTL, msg="the room written again at the promoted replica")
            assert stats(cl, room) == {"clients": 2, "users": 2}
            assert api(gw, "presence/stats", room) == {"clients": 2, "users": 2}
        finally:
            await close_all(a, b)

    try:
        run(body(), timeout=120)
    finally:
        replica.close()


def test_a_rooms_slot_moved_to_another_master_keeps_its_presence_exact(redis_cluster, cnodes):
    """The room's slot migrated with its keys (as redis-cli --cluster
    reshard does): the node's later updates and beats follow the MOVED to
    the new owner, and the room's presence stays exact there."""
    cl = redis_cluster
    n1 = cnodes("pm1")
    room = rooms(cl, "roomm")[0]
    slot = key_slot(pkey(room))

    async def body():
        a = await ws_connect(n1, "token=" + token("m1") + "&channels=" + room)
        b = c = None
        try:
            await wait_stats(cl, room, {"clients": 1, "users": 1})
            src = cl.owner_port(slot)
            dst = next(p for p in cl.masters() if p != src)
            cl.move_slot(slot, dst)
            assert cl.owner_port(slot) == dst
            assert stats(cl, room) == {"clients": 1, "users": 1}
            b = await ws_connect(n1, "token=" + token("m2") + "&channels=" + room)
            await wait_stats(cl, room, {"clients": 2, "users": 2})
            await a.close()
            await wait_stats(cl, room, {"clients": 1, "users": 1})
            assert [e["user"] for e in presence(cl, room)] == ["m2"]
            assert cl.client(src).keys(f"*{{{room}}}*") == []
            # a beat later (every ttl / 3), still exact, scored at the new owner
            score = cl.client(dst).zscore(pkey(room, "presence-nodes"), "pm1")
            await async_wait_until(
                lambda: cl.client(dst).zscore(pkey(room, "presence-nodes"), "pm1") != score,
                timeout=TTL, msg="a beat at the new owner")
            assert stats(cl, room) == {"clients": 1, "users": 1}
            assert api(n1, "presence/stats", room) == {"clients": 1, "users": 1}
        finally:
            await close_all(a, b, c)

    run(body())
