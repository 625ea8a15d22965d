"""Events (SPEC §9) and presence (SPEC §8) on a real three-master Redis
Cluster (SPEC §10, README "Redis Cluster"): the events stream is the one
key <prefix>{_events} on the shard that owns it; a channel's presence keys
live beside its pub/sub channel and history in the {C} slot, and a node's
liveness in C is its score in {C}:presence-nodes, pushed forward by one
beat per channel it has entries in. What a backend sees is asserted: XRANGE
on the owning master, the one-key FCALL forms at the channel's owner, and
GET /api/presence[/stats] on the node.

The nodes run with PUSHGATE_CLUSTER_PREVIEW=1 (main.c refuses
redis+cluster:// without it until the preview ends)."""

import json
import signal
import time

import pytest

import pgtest
from clusterkit import PREFIX, redis_cluster  # noqa: F401
from pgtest import API_KEY, async_wait_until, mint_hs256, run, ws_connect
from test_core import close_all

SECRET = "s"
TTL = 3
ARGS = ["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous",
        "--public-topics", "room*,ev*", "--presence-topics", "room*",
        "--presence-ttl", str(TTL), "--events"]
PREVIEW = {"PUSHGATE_CLUSTER_PREVIEW": "1"}
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
    seeds = ",".join(f"127.0.0.1:{p}" for p in redis_cluster.masters()[:1])

    def make(node_id, args=()):
        gw = pgtest.Gateway(None, tmp_path / node_id, args=ARGS + ["--node-id", node_id] +
                            list(args), env=PREVIEW, name=node_id,
                            redis_url="redis+cluster://" + seeds)
        made.append(gw)
        return gw.start()
    try:
        yield make
    finally:
        bad = []
        for gw in made:
            running = gw.alive()
            rc = gw.stop(timeout=10)
            if running and rc != 0:
                bad.append((gw.name, rc, pgtest.tail(gw.logfile, 60)))
            if gw in pgtest.ACTIVE:
                pgtest.ACTIVE.remove(gw)
        assert not bad, f"nodes exited non-zero: {bad}"


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
