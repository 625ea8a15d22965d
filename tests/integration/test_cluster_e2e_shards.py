"""A node on a real three-master Redis Cluster (SPEC §10, README "Redis
Cluster"): redis+cluster:// starts the cluster subscriber and the router in
place of the two links of one Redis. Channels whose slots live on three
different shards are delivered (POST /api/publish, the one-key FCALL, raw
SPUBLISH), control orders reach the node over {_control}, and a client that
drops and resumes with its per-channel positions gets every message once,
per channel in id order, while publishers run on all three shards at once;
a slot moved under load and a master killed with -9 lose no history-backed
message.

SSE streams get their positions per channel in `id:` (a list as of each
event) and resume with it as Last-Event-ID."""

import asyncio
import json
import threading
import time

import pytest
import redis as redis_py

import pgtest
from clusterkit import (PREFIX, RedisCluster, channel_in_slot, key_slot,  # noqa: F401
                        redis_cluster)
from pgtest import API_KEY, WSClient, async_wait_until

TOPICS = "e2e*,mv*,kill*,floor*"
ARGS = ["--api-key", API_KEY, "--public-topics", TOPICS, "--history-size", "5000"]


def cluster_url(cl, ports=None, creds=""):
    ports = ports or [n.port for n in cl.nodes[:1]]
    return f"redis+cluster://{creds}" + ",".join(f"127.0.0.1:{p}" for p in ports)


@pytest.fixture
def cnode(tmp_path):
    """cnode(cluster, args=(), ready=True, seeds=None, creds="") -> a started
    Gateway on it (seeds: ports, default the first node; creds "user:pw@"); each
    must exit 0 on SIGTERM at teardown (no leak under ASan)."""
    made = []

    def make(cl, args=(), ready=True, seeds=None, creds=""):
        gw = pgtest.Gateway(None, tmp_path / "gw", args=list(ARGS) + list(args),
                            name=f"cgw{len(made) + 1}", ready=ready,
                            redis_url=cluster_url(cl, seeds, creds))
        made.append(gw)
        return gw.start()
    try:
        yield make
    finally:
        bad = pgtest.stop_gateways(made)
        assert not bad, "node(s) did not exit 0 after SIGTERM:\n" + "\n".join(bad)


def hkey(name):
    return f"{PREFIX}{{{name}}}:history"


def fcall_publish(cl, name, payload):
    """The one-key form, sent to the master owning the key, following MOVED
    and ASK (a slot being migrated) as a cluster client does."""
    args = ("FCALL", "pushgate_publish", 1, hkey(name), name, payload)
    c = cl.owner_of_key(hkey(name))
    for _ in range(5):
        try:
            return c.execute_command(*args)
        except redis_py.ResponseError as e:
            words = str(e).split()
            if len(words) != 3 or words[0] not in ("MOVED", "ASK"):
                raise
            c = cl.client(int(words[2].rsplit(":", 1)[1]))
            if words[0] == "ASK":
                p = c.pipeline(transaction=False)   # one connection: ASKING, then the call
                p.execute_command("ASKING")
                p.execute_command(*args)
                return p.execute()[1]
    raise AssertionError(f"FCALL on {name}: too many redirections")


def shard_numsub(cl, name):
    """PUBSUB SHARDNUMSUB of name's cluster channel at its owner."""
    ch = f"{PREFIX}{{{name}}}"
    reply = cl.owner_of_key(ch).execute_command("PUBSUB", "SHARDNUMSUB", ch)
    return int(reply[1])


async def ws(gw, channels):
    return await WSClient.connect(gw.ws_url("channels=" + ",".join(channels)))


def test_readyz_publish_fcall_spublish_on_three_shards(redis_cluster, cnode):
    cl = redis_cluster
    by_shard = cl.channels_on_shards(1, stem="e2e")
    names = [cs[0] for cs in by_shard.values()]
    gw = cnode(cl)
    assert gw.readyz() == 200
    # {broadcast} and {_control} always, each at its own shard
    assert shard_numsub(cl, "broadcast") == 1
    assert shard_numsub(cl, "_control") == 1

    async def go():
        c = await ws(gw, names)
        await async_wait_until(lambda: all(shard_numsub(cl, n) == 1 for n in names),
                               msg="every channel SSUBSCRIBEd at its owner")
        ids = {}
        for n in names:
            r = gw.publish({"channel": n, "event": "api", "data": {"n": n}})
            assert r.status == 200, r
            ids[n] = r.json()["id"]
            got = await c.recv_json()
            assert got == {"channel": n, "event": "api", "id": ids[n], "data": {"n": n}}
            fid = fcall_publish(cl, n, json.dumps({"data": "fc"}))
            got = await c.recv_json()
            assert got == {"channel": n, "id": str(fid), "data": "fc"}
            assert int(fid) > int(ids[n])
            ch = f"{PREFIX}{{{n}}}"
            assert cl.owner_of_key(ch).execute_command("SPUBLISH", ch, '{"data":"raw"}') == 1
            got = await c.recv_json()
            assert got == {"channel": n, "data": "raw"}
        # a list of channels on three shards: one id each, in order
        r = gw.publish({"channels": names, "data": 7})
        assert r.status == 200 and len(r.json()["ids"]) == 3, r
        got = [await c.recv_json() for _ in names]
        assert sorted(m["channel"] for m in got) == sorted(names)
        # broadcast lives on its own shard too
        assert gw.publish({"channel": "broadcast", "data": "all"}).status == 200
        assert (await c.recv_json())["data"] == "all"
        await c.close()
        await async_wait_until(lambda: all(shard_numsub(cl, n) == 0 for n in names),
                               msg="SUNSUBSCRIBEd when the last member left")
    pgtest.run(go())


def test_control_orders_reach_the_node_through_the_control_shard(redis_cluster, cnode):
    cl = redis_cluster
    gw = cnode(cl, ["--jwt-secret", "s3cret"])
    tok = pgtest.mint_hs256("s3cret", {"sub": "42"})

    async def go():
        c = await WSClient.connect(gw.ws_url(f"token={tok}"))
        r = gw.api("/api/subscribe", {"user": "42", "channel": "e2e.room"})
        assert r.status == 200 and r.json() == {"nodes": 1}, r
        msg, _ = await c.recv_until(lambda m: m.get("type") == "subscribed")
        assert msg["channel"] == "e2e.room"
        r = gw.api("/api/disconnect", {"user": "42", "reconnect": False})
        assert r.status == 200 and r.json() == {"nodes": 1}, r
        code, _ = await c.wait_closed()
        assert code == 4003
    pgtest.run(go())


# --------------------------------------------------------------------------
# Publishers on three shards while clients drop and resume


class Publisher(threading.Thread):
    """Publishes n messages on one channel, alternating POST /api/publish
    and the one-key FCALL, as fast as they are answered; ids[] are the
    answers, in order. failures counts refused publishes when
    tolerate_failures (a master being killed), else the first one raises."""

    def __init__(self, gw, cl, name, n, every_s=0.0, tolerate_failures=False):
        super().__init__(daemon=True)
        self.gw, self.cl, self.name, self.n = gw, cl, name, n
        self.every_s = every_s
        self.tolerate = tolerate_failures
        self.ids = []
        self.failures = 0
        self.why = []
        self.error = None

    def run(self):
        try:
            for i in range(self.n):
                try:
                    if i % 2 == 0:
                        r = self.gw.publish({"channel": self.name, "data": {"i": i}})
                        if r.status != 200:
                            raise RuntimeError(f"publish {self.name} #{i}: {r}")
                        self.ids.append(int(r.json()["id"]))
                    else:
                        self.ids.append(int(fcall_publish(self.cl, self.name,
                                                          json.dumps({"data": {"i": i}}))))
                except Exception as e:  # noqa: BLE001
                    if not self.tolerate:
                        raise
                    self.failures += 1
                    self.why.append(f"{'api' if i % 2 == 0 else 'fcall'} #{i}: {e}")
                if self.every_s:
                    time.sleep(self.every_s)   # the offered rate, not a wait for a state
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


class Tally:
    """What one client got per channel: ids strictly rising (no duplicate,
    id order), checked as they come."""

    def __init__(self, names, start):
        self.ids = {n: [] for n in names}
        self.pos = dict(start)

    def add(self, msg):
        n, i = msg["channel"], int(msg["id"])
        assert i > self.pos[n], f"{n}: id {i} after {self.pos[n]} (duplicate or out of order)"
        self.ids[n].append(i)
        self.pos[n] = i

    def has_all(self, expected):
        return all(set(expected[n]) <= set(self.ids[n]) for n in expected)


def position_list(tally, names):
    """since= / Last-Event-ID as a list of per-channel positions."""
    return ",".join(f"{n}:{tally.pos[n]}" for n in names)


async def ws_resumer(gw, names, tally, expected, done, round_sizes, drops, by_url=False):
    """Connects, subscribes each channel with its own since (the per-channel
    position the WebSocket `subscribe` command carries; by_url: the list of
    them in since= on the URL), takes a few messages, drops (a clean close
    or a reset, in turn) and does it again, until the publishers are done
    and it has every id."""
    rnd = 0
    while True:
        if by_url:
            c = await WSClient.connect(gw.ws_url(f"channels={','.join(names)}"
                                                 f"&since={position_list(tally, names)}"))
        else:
            c = await WSClient.connect(gw.ws_url())
        for n in names if not by_url else ():
            await c.send_json({"type": "subscribe", "channel": n, "since": str(tally.pos[n])})
        want = round_sizes[rnd % len(round_sizes)]
        got = 0
        deadline = time.monotonic() + 30
        while got < want and time.monotonic() < deadline:
            if done.is_set() and tally.has_all(expected()):
                break
            try:
                m = await c.recv_json(timeout=0.5)
            except asyncio.TimeoutError:
                continue
            if "type" in m:
                assert m["type"] == "subscribed", m
                continue
            tally.add(m)
            got += 1
        if done.is_set() and tally.has_all(expected()):
            await c.close()
            return
        assert time.monotonic() < deadline, "a resumed client got nothing for 30 s"
        if rnd % 2:
            c.ws.transport.abort()
        else:
            await c.close()
        drops.append(1)
        rnd += 1


def parse_positions(text):
    """An SSE id / since list: ({channel: id}, the bare id or None). Each
    entry splits at its last ':' (pg_since.h)."""
    pos, bare = {}, None
    for e in text.split(","):
        ch, sep, i = e.rpartition(":")
        if sep:
            assert ch not in pos, f"{ch} twice in {text}"
            pos[ch] = int(i)
        else:
            assert bare is None, f"two bare ids in {text}"
            bare = int(i)
    return pos, bare


def position_of(text, channel):
    pos, bare = parse_positions(text)
    return pos.get(channel, bare)


async def sse_resumer(gw, names, tally, expected, done, round_sizes, drops, server_ids=False):
    """The same over SSE, one stream of names, resuming with Last-Event-ID.
    server_ids: the last `id:` line the node sent, unchanged (what a browser
    sends by itself), each checked to be the stream's positions right after
    its event (every channel at the last id it delivered, or the one it
    resumed from; the highest as the bare id); before the first event the
    seed positions stand in. Otherwise a list the client builds from its own
    positions (its bare position for one channel), and each `id:` must put
    the event's channel at its id."""
    single = len(names) == 1
    last = str(tally.pos[names[0]]) if single else position_list(tally, names)
    rnd = 0
    while True:
        if not server_ids:
            last = str(tally.pos[names[0]]) if single else position_list(tally, names)
        s = await pgtest.sse_connect(gw, f"channels={','.join(names)}", last_event_id=last)
        assert s.status == 200
        want = round_sizes[rnd % len(round_sizes)]
        got = 0
        deadline = time.monotonic() + 30
        seen = [f"resumed from {last}"]
        while got < want and time.monotonic() < deadline:
            if done.is_set() and tally.has_all(expected()):
                break
            try:
                ev = await s.next_data_event(timeout=0.5)
            except asyncio.TimeoutError:
                continue
            assert ev is not None, "stream ended"
            assert ev.get("event") is None, ev
            m = json.loads(ev["data"])
            seen.append(f"{m['channel']}:{m['id']} id: {ev['id']}")
            tally.add(m)
            # the highest as the bare id, each channel below it listed
            pos, bare = parse_positions(ev["id"])
            assert bare is not None and all(i < bare for i in pos.values()), ev["id"]
            if server_ids:
                # the positions as of this event, not of any later one
                assert {n: position_of(ev["id"], n) for n in names} == tally.pos, \
                    "\n".join(seen)
                last = ev["id"]
            else:
                assert position_of(ev["id"], m["channel"]) == int(m["id"]), ev["id"]
            got += 1
        await s.close()
        if done.is_set() and tally.has_all(expected()):
            return
        assert time.monotonic() < deadline, "a resumed stream got nothing for 30 s"
        drops.append(1)
        rnd += 1


class Publishers(list):
    """The tests' publishers, one per channel: started together, waited for
    together, and what they had answered (expected())."""

    def start(self):
        for p in self:
            p.start()

    def expected(self):
        return {p.name: p.ids for p in self}

    async def finish(self, done, check_errors=True):
        """Until all are done; then done is set (and, unless told, none
        failed)."""
        while any(p.is_alive() for p in self):
            await asyncio.sleep(0.05)
        done.set()
        if check_errors:
            for p in self:
                assert p.error is None, p.error


def test_a_channel_ahead_does_not_hide_a_new_channels_first_message(redis_cluster, cnode):
    """In a cluster ids rise per channel only. A channel whose ids run ahead
    (here its history's last id set an hour on) must not raise the replay
    point of a channel subscribed after it: on one Redis the highest id seen
    on any channel is a floor for all; in a cluster, once the new channel's
    subscription is lost and comes back, the replay from that floor would
    skip what was published on it meanwhile."""
    cl = redis_cluster
    by_shard = cl.channels_on_shards(1, stem="floor")
    ahead, fresh = [cs[0] for cs in by_shard.values()][:2]
    gw = cnode(cl)

    async def go():
        a = await ws(gw, [ahead])
        await async_wait_until(lambda: shard_numsub(cl, ahead) == 1, msg="ahead subscribed")
        first = int(gw.publish({"channel": ahead, "data": 1}).json()["id"])
        assert int((await a.recv_json())["id"]) == first
        future = first + 3600 * 1000 * 1000   # ids are ms * 1000 + n
        cl.owner_of_key(hkey(ahead)).execute_command("XSETID", hkey(ahead), f"{future}-0")
        r = gw.publish({"channel": ahead, "data": 2})
        assert int(r.json()["id"]) == future + 1
        assert int((await a.recv_json())["id"]) == future + 1   # the node has seen it
        b = await ws(gw, [fresh])
        await async_wait_until(lambda: shard_numsub(cl, fresh) == 1, msg="fresh subscribed")
        # the node's subscription to fresh is cut, and a message lands meanwhile:
        # only the replay from fresh's own position can bring it
        owner = cl.owner_of_key(f"{PREFIX}{{{fresh}}}")
        assert owner.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
        rid = int(gw.publish({"channel": fresh, "data": 3}).json()["id"])
        assert rid < future
        got = await b.recv_json(timeout=10)
        assert (got["channel"], int(got["id"]), got["data"]) == (fresh, rid, 3)
        await a.close()
        await b.close()
    pgtest.run(go(), timeout=60)


def seed(gw, names):
    """One message per channel before the test's publishers, so every
    client starts with a position on each channel."""
    return {n: int(gw.publish({"channel": n, "data": "seed"}).json()["id"]) for n in names}


def three_shards(cl, cnode, stem, n=200):
    """A channel on each of three shards, a node, one seed message on each
    (their ids: where clients start) and a publisher of n more per channel,
    not started: (names, gw, start, pubs)."""
    names = [cs[0] for cs in cl.channels_on_shards(1, stem=stem).values()]
    assert len({cl.owner_port(key_slot(f"{PREFIX}{{{n}}}")) for n in names}) == 3
    gw = cnode(cl)
    start = seed(gw, names)
    return names, gw, start, Publishers(Publisher(gw, cl, name, n) for name in names)


def test_three_shards_concurrent_publishers_clients_drop_and_resume(redis_cluster, cnode):
    names, gw, start, pubs = three_shards(redis_cluster, cnode, "e2eres")
    done = threading.Event()
    expected = pubs.expected

    async def go():
        drops = []
        ws_tallies = [Tally(names, start) for _ in range(2)]
        sse_tallies = [Tally([n], {n: start[n]}) for n in names]
        tasks = [asyncio.ensure_future(ws_resumer(gw, names, t, expected, done, [17, 40, 5], drops))
                 for t in ws_tallies]
        tasks += [asyncio.ensure_future(
            sse_resumer(gw, [n], t, lambda n=n: {n: expected()[n]}, done, [23, 9, 31], drops))
            for n, t in zip(names, sse_tallies)]
        pubs.start()
        await pubs.finish(done)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for t in ws_tallies:
            for n in names:
                assert t.ids[n] == sorted(expected()[n]), f"{n}: ws got {t.ids[n]}"
        for n, t in zip(names, sse_tallies):
            assert t.ids[n] == sorted(expected()[n]), f"{n}: sse got {t.ids[n]}"
        assert len(drops) >= 10, f"only {len(drops)} drops: the test did not test resuming"
    pgtest.run(go(), timeout=120)
    # nothing was delivered twice or cut short: no recovery notice either
    assert "recovery incomplete" not in gw.log()


def test_three_shards_clients_resume_with_position_lists_on_connect(redis_cluster, cnode):
    """The same drops and resumes, with the positions on connect: WebSocket
    clients put them in since= as a list, an SSE stream of all three
    channels in Last-Event-ID. Each channel resumes from its own position,
    so a message in flight on a slower shard when the client dropped is
    not skipped (one since for all would skip it): every id once, in
    order, per channel."""
    names, gw, start, pubs = three_shards(redis_cluster, cnode, "e2elist")
    done = threading.Event()
    expected = pubs.expected

    async def go():
        drops = []
        ws_tallies = [Tally(names, start) for _ in range(2)]
        sse_tallies = [Tally(names, start) for _ in range(2)]
        tasks = [asyncio.ensure_future(ws_resumer(gw, names, t, expected, done, [17, 40, 5],
                                                  drops, by_url=True))
                 for t in ws_tallies]
        tasks += [asyncio.ensure_future(
            sse_resumer(gw, names, t, expected, done, [23, 9, 31], drops))
            for t in sse_tallies]
        pubs.start()
        await pubs.finish(done)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for kind, tallies in (("ws", ws_tallies), ("sse", sse_tallies)):
            for t in tallies:
                for n in names:
                    assert t.ids[n] == sorted(expected()[n]), f"{n}: {kind} got {t.ids[n]}"
        assert len(drops) >= 10, f"only {len(drops)} drops: the test did not test resuming"
    pgtest.run(go(), timeout=120)
    assert "recovery incomplete" not in gw.log()


def test_three_shards_sse_resumes_with_the_ids_the_node_wrote(redis_cluster, cnode):
    """SSE streams of three channels on three shards resume with the last
    `id:` line they got, as a browser does by itself, while publishers run
    on all three: each `id:` is the stream's position list right after its
    event, and every id arrives once, in order, per channel."""
    names, gw, start, pubs = three_shards(redis_cluster, cnode, "e2esid")
    done = threading.Event()
    expected = pubs.expected

    async def go():
        drops = []
        tallies = [Tally(names, start) for _ in range(3)]
        tasks = [asyncio.ensure_future(sse_resumer(gw, names, t, expected, done, [23, 9, 31],
                                                   drops, server_ids=True))
                 for t in tallies]
        pubs.start()
        await pubs.finish(done)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        for t in tallies:
            for n in names:
                assert t.ids[n] == sorted(expected()[n]), f"{n}: sse got {t.ids[n]}"
        assert len(drops) >= 10, f"only {len(drops)} drops: the test did not test resuming"
    pgtest.run(go(), timeout=120)
    assert "recovery incomplete" not in gw.log()


def test_sse_id_lists_every_channel_at_its_own_position_during_a_replay(redis_cluster, cnode):
    """Two streams resume two channels on two shards from the same list;
    the second is served from the windows the first one's reads left, so
    its replay goes out at once: every `id:` still gives each channel the
    position the client has (the one it resumed from, until that channel
    delivers)."""
    cl = redis_cluster
    a, b = [cs[0] for cs in cl.channels_on_shards(1, stem="e2ewin").values()][:2]
    gw = cnode(cl)
    hist = {n: [int(gw.publish({"channel": n, "data": k}).json()["id"]) for k in range(4)]
            for n in (a, b)}
    since = f"{a}:{hist[a][0]},{b}:{hist[b][0]}"

    async def replay(s):
        out = []
        for _ in range(6):
            ev, m = await s.next_json(timeout=5)
            out.append((m["channel"], int(m["id"]), ev["id"]))
        return out

    async def go():
        first = await pgtest.sse_connect(gw, f"channels={a},{b}", last_event_id=since)
        assert first.status == 200
        await replay(first)
        second = await pgtest.sse_connect(gw, f"channels={a},{b}", last_event_id=since)
        assert second.status == 200
        got = await replay(second)
        await first.close()
        await second.close()
        pos = {a: hist[a][0], b: hist[b][0]}
        for ch, i, sid in got:
            pos[ch] = i
            assert {n: position_of(sid, n) for n in (a, b)} == pos, got
    pgtest.run(go(), timeout=30)


def test_a_channel_below_another_shards_ids_resumes_from_the_sse_id(redis_cluster, cnode):
    """The reason for the list: a stream of two channels on two shards,
    one whose ids run an hour ahead. Its event's `id:` keeps the other
    channel at its own position (where it joined: it delivered nothing),
    so a message published on it after the drop, with a lower id than the
    last one seen, is replayed on resume with that `id:` as Last-Event-ID;
    the bare id alone would skip it."""
    cl = redis_cluster
    ahead, behind = [cs[0] for cs in cl.channels_on_shards(1, stem="e2eskew").values()][:2]
    gw = cnode(cl)
    first = int(gw.publish({"channel": ahead, "data": 0}).json()["id"])
    future = first + 3600 * 1000 * 1000   # ids are ms * 1000 + n
    cl.owner_of_key(hkey(ahead)).execute_command("XSETID", hkey(ahead), f"{future}-0")
    q = f"channels={ahead},{behind}"

    async def go():
        s = await pgtest.sse_connect(gw, q)
        assert s.status == 200
        await async_wait_until(lambda: shard_numsub(cl, ahead) == 1 and
                               shard_numsub(cl, behind) == 1, msg="both subscribed")
        rid = int(gw.publish({"channel": ahead, "data": 1}).json()["id"])
        assert rid == future + 1
        ev, m = await s.next_json(timeout=5)
        assert (m["channel"], int(m["id"])) == (ahead, rid)
        pos, bare = parse_positions(ev["id"])
        assert bare == rid and set(pos) == {behind, "broadcast"}, ev["id"]
        assert pos[behind] < rid
        await s.close()
        await async_wait_until(lambda: shard_numsub(cl, behind) == 0, msg="behind unsubscribed")
        lost = int(gw.publish({"channel": behind, "data": 2}).json()["id"])
        assert pos[behind] < lost < rid   # what a bare id would skip
        s = await pgtest.sse_connect(gw, q, last_event_id=ev["id"])
        assert s.status == 200
        ev2, m2 = await s.next_json(timeout=5)
        assert (m2["channel"], int(m2["id"]), m2["data"]) == (behind, lost, 2)
        assert position_of(ev2["id"], ahead) == rid and position_of(ev2["id"], behind) == lost
        # live-only (raw SPUBLISH): no id, as on one Redis; the browser keeps the last
        ch = f"{PREFIX}{{{behind}}}"
        await async_wait_until(lambda: shard_numsub(cl, behind) == 1, msg="behind subscribed")
        assert cl.owner_of_key(ch).execute_command("SPUBLISH", ch, '{"data":"raw"}') == 1
        ev3, m3 = await s.next_json(timeout=5)
        assert m3 == {"channel": behind, "data": "raw"} and "id" not in ev3, ev3
        await s.close()
    pgtest.run(go(), timeout=30)


def test_a_stream_of_many_long_channels_gets_an_id_its_reconnect_can_carry(redis_cluster, cnode):
    """40 channels of 100-byte names: their positions would not fit beside
    the URL in the 8 KB a node keeps of a request's headers, so the `id:`
    is shortened to what does (the lowest positions listed, the bare id the
    lowest one left). A reconnect carrying it twice, in since= as
    pushgate.js puts it and in Last-Event-ID as the browser adds it, is
    accepted, and no channel resumes above its own position: every message
    published while away arrives (some again, which a client drops by id)."""
    import urllib.parse
    cl = redis_cluster
    names = [f"e2elong{i:03d}" + "x" * 93 for i in range(40)]
    gw = cnode(cl)
    q = "channels=" + ",".join(names)

    async def go():
        s = await pgtest.sse_connect(gw, q)
        assert s.status == 200
        await async_wait_until(lambda: all(shard_numsub(cl, n) == 1 for n in names),
                               msg="subscribed")
        sent = {}
        for n in names[:20]:
            sent[n] = int(gw.publish({"channel": n, "data": 1}).json()["id"])
        got = {}
        for _ in range(20):
            ev, m = await s.next_json(timeout=5)
            got[m["channel"]] = int(m["id"])
        assert got == sent
        last = ev["id"]
        assert len(last) < 1200, len(last)
        pos, bare = parse_positions(last)
        assert 0 < len(pos) < 40
        for n in names:
            assert position_of(last, n) <= sent.get(n, position_of(last, n)), (n, last)
        await s.close()
        await async_wait_until(lambda: shard_numsub(cl, names[0]) == 0, msg="stream gone")
        away = {n: int(gw.publish({"channel": n, "data": 2}).json()["id"]) for n in names[::3]}
        s = await pgtest.sse_connect(gw, q + "&since=" + urllib.parse.quote(last, safe=""),
                                     last_event_id=last)
        assert s.status == 200, s.reason
        seen = set()
        while not set(away.values()) <= seen:
            _, m = await s.next_json(timeout=5)
            seen.add(int(m["id"]))
        await s.close()
    pgtest.run(go(), timeout=60)
    assert "do not fit" in gw.log()


@pytest.mark.parametrize("kind", ["ws", "sse"])
def test_position_list_channel_without_entry_starts_live_and_bad_list_refused(
        redis_cluster, cnode, kind):
    """History on three shards; a client lists two of its three channels:
    those two replay exactly what followed their own position, the third
    (and broadcast) only what is published once it is in. A malformed list
    is refused with 400 and the reason, before any stream starts."""
    cl = redis_cluster
    names = [cs[0] for cs in cl.channels_on_shards(1, stem=f"e2elive{kind}").values()]
    gw = cnode(cl)
    hist = {n: [int(gw.publish({"channel": n, "data": k}).json()["id"]) for k in range(4)]
            for n in names}
    pos = {names[0]: hist[names[0]][0], names[1]: hist[names[1]][2]}
    since = ",".join(f"{n}:{i}" for n, i in pos.items())
    q = f"channels={','.join(names)}"

    async def go():
        if kind == "ws":
            c = await WSClient.connect(gw.ws_url(f"{q}&since={since}"))
            recv = c.recv_json
        else:
            c = await pgtest.sse_connect(gw, q, last_event_id=since)
            assert c.status == 200

            async def recv(timeout=5.0):
                return (await c.next_json(timeout))[1]
        got = {n: [] for n in names + ["broadcast"]}
        for _ in range(3 + 1):   # names[0]: 3 after its position, names[1]: 1
            m = await recv(timeout=5.0)
            got[m["channel"]].append(int(m["id"]))
        await async_wait_until(lambda: all(shard_numsub(cl, n) == 1 for n in names),
                               msg="every channel SSUBSCRIBEd")
        live = {n: int(gw.publish({"channel": n, "data": "live"}).json()["id"])
                for n in names + ["broadcast"]}
        for _ in live:
            m = await recv(timeout=5.0)
            got[m["channel"]].append(int(m["id"]))
        await c.close()
        assert got[names[0]] == hist[names[0]][1:] + [live[names[0]]]
        assert got[names[1]] == hist[names[1]][3:] + [live[names[1]]]
        assert got[names[2]] == [live[names[2]]], "no entry: live only"
        assert got["broadcast"] == [live["broadcast"]], "no entry: live only"
    pgtest.run(go(), timeout=30)

    bad = f"{names[0]}:1,{names[0]}:2"
    if kind == "ws":
        r = pgtest.http_request(gw.port, "GET", f"/ws?{q}&since={bad}", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    else:
        r = pgtest.http_request(gw.port, "GET", f"/sse?{q}", headers={"Last-Event-ID": bad})
    assert (r.status, json.loads(r.body)) == (400, {"error": "since lists a channel twice"})


# --------------------------------------------------------------------------
# Slot moves and failovers under load


async def collect(c, tally, expected, done, timeout=30):
    """Receive on c until the publishers are done and tally has every id."""
    deadline = time.monotonic() + timeout
    while not (done.is_set() and tally.has_all(expected())):
        assert time.monotonic() < deadline, \
            f"missing: { {n: sorted(set(expected()[n]) - set(tally.ids[n])) for n in tally.ids} }"
        try:
            m = await c.recv_json(timeout=0.5)
        except asyncio.TimeoutError:
            continue
        assert "type" not in m, m   # no recovery notice: nothing was lost
        tally.add(m)


def test_slot_resharded_under_load_loses_nothing(redis_cluster, cnode):
    """redis-cli --cluster reshard of a busy channel's slot, 50 msg/s on it:
    the node follows the sunsubscribe to the new owner and replays what it
    missed; the client sees every id once, in order, and no notice."""
    cl = redis_cluster
    src, dst = cl.masters()[0], cl.masters()[1]
    lo = min(lo for (lo, _hi), p in cl.slot_map().items() if p == src)
    name = channel_in_slot(lo, "mv")
    other = cl.channels_on_shards(1, stem="mvother")[dst][0]
    names = [name, other]
    gw = cnode(cl)
    start = seed(gw, names)
    pubs = Publishers(Publisher(gw, cl, n, 150, every_s=0.02) for n in names)
    done = threading.Event()

    expected = pubs.expected

    async def go():
        c = await WSClient.connect(gw.ws_url())
        for n in names:
            await c.send_json({"type": "subscribe", "channel": n, "since": str(start[n])})
            assert (await c.recv_json()) == {"type": "subscribed", "channel": n}
        tally = Tally(names, start)
        pubs.start()
        await async_wait_until(lambda: len(pubs[0].ids) >= 30, timeout=10, msg="publishing")
        moved = await asyncio.get_running_loop().run_in_executor(
            None, cl.reshard_lowest_slot, src, dst)
        assert moved == lo
        # SPEC 10: subscribed at the new owner within 2 s of the move
        await async_wait_until(lambda: shard_numsub(cl, name) == 1, timeout=2,
                               msg="subscribed at the new owner")
        await pubs.finish(done)
        await collect(c, tally, expected, done)
        for n in names:
            assert tally.ids[n] == sorted(expected()[n])
        assert cl.owner_port(lo) == dst
        assert shard_numsub(cl, name) == 1   # subscribed at the new owner
        await c.close()
    pgtest.run(go(), timeout=120)


@pytest.fixture
def cluster_with_replicas(tmp_path):
    c = RedisCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=2000)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_master_killed_followed_to_its_replica(cluster_with_replicas, cnode):
    """kill -9 of the master owning a busy channel, 20 msg/s: publishes fail
    while no master owns the slot (the caller is told), and every publish
    that was answered with an id reaches the client once, in order, after
    the replica took over, on that channel and on one of another shard."""
    cl = cluster_with_replicas
    by_shard = cl.channels_on_shards(1, stem="kill")
    victim = cl.masters()[0]
    name = by_shard[victim][0]
    other = by_shard[cl.masters()[1]][0]
    names = [name, other]
    gw = cnode(cl, seeds=[n.port for n in cl.nodes])
    start = seed(gw, names)
    pubs = Publishers(Publisher(gw, cl, n, 200, every_s=0.05, tolerate_failures=True)
                      for n in names)
    done = threading.Event()

    expected = pubs.expected

    async def go():
        c = await WSClient.connect(gw.ws_url())
        for n in names:
            await c.send_json({"type": "subscribe", "channel": n, "since": str(start[n])})
            assert (await c.recv_json()) == {"type": "subscribed", "channel": n}
        tally = Tally(names, start)
        pubs.start()
        await async_wait_until(lambda: len(pubs[0].ids) >= 20, timeout=10, msg="publishing")
        killed_at = time.monotonic()
        slot = key_slot(f"{PREFIX}{{{name}}}")
        cl.node_by_port(victim).kill9()
        await async_wait_until(lambda: gw.readyz() != 200, timeout=10, msg="node not ready")

        def promoted():
            try:
                return cl.owner_port(slot) != victim
            except Exception:  # noqa: BLE001 - a node mid-failover
                return False
        await async_wait_until(promoted, timeout=20, interval=0.05, msg="replica promoted")
        promoted_at = time.monotonic()
        await async_wait_until(lambda: gw.readyz() == 200, timeout=20,
                               msg="node ready again at the promoted replica")
        recovered_s = time.monotonic() - killed_at
        # SPEC 10: within 2 s of the move (here, of the promotion a test
        # client saw; about 0.1 s measured)
        assert time.monotonic() - promoted_at < 2.0
        await pubs.finish(done, check_errors=False)
        await collect(c, tally, expected, done)
        for n in names:
            assert tally.ids[n] == sorted(expected()[n])
        await c.close()
        return recovered_s
    recovered_s = pgtest.run(go(), timeout=120)
    assert pubs[0].failures > 0, "the kill did not interrupt publishing"
    # the other shard: the node refuses only what Redis refuses while a slot
    # has no master (cluster-require-full-coverage), never on its own; the
    # test's own FCALL client may also have asked the master being killed
    # for the slot map (clusterkit's first live node)
    assert all("CLUSTERDOWN" in w for w in pubs[1].why if w.startswith("api")), pubs[1].why
    assert all("CLUSTERDOWN" in w or "Connection" in w
               for w in pubs[1].why if w.startswith("fcall")), pubs[1].why
    assert len(pubs[0].ids) > 100, f"only {len(pubs[0].ids)} publishes after the failover"
    assert recovered_s < 15, recovered_s


# --------------------------------------------------------------------------
# ACL users


CLUSTER_ACL_WORDS = "+ssubscribe +sunsubscribe +spublish +cluster|slots +asking"


def test_acl_user_with_the_readme_rule_and_a_wrong_password(tmp_path, cnode):
    """The README's rule for one Redis plus its cluster words, on every
    master: the node is ready, reads the map, loads the library, subscribes
    and publishes on every shard. With a wrong password it stays up at 503,
    says why without the password, and exits cleanly."""
    from sentinelkit import ACL_RULE
    rule = (ACL_RULE + " " + CLUSTER_ACL_WORDS).split()
    assert CLUSTER_ACL_WORDS in " ".join(pgtest.REPO.joinpath("README.md").read_text().split())
    cl = RedisCluster(tmp_path / "cluster-acl", masters=3, acl=("admin", "adminpw"),
                      app_user=("pg", "pgpw", rule))
    try:
        cl.start()
        names = [cs[0] for cs in cl.channels_on_shards(1, stem="e2eacl").values()]
        seeds = [cl.masters()[0]]
        bad = cnode(cl, ready=False, seeds=seeds, creds="pg:wrong@")
        gw = cnode(cl, seeds=seeds, creds="pg:pgpw@")

        async def go():
            c = await ws(gw, names)
            await async_wait_until(lambda: all(shard_numsub(cl, n) == 1 for n in names),
                                   msg="subscribed on every shard")
            for n in names:
                r = gw.publish({"channel": n, "data": n})
                assert r.status == 200, r
                assert (await c.recv_json())["data"] == n
            await c.close()
        pgtest.run(go())
        assert bad.readyz() == 503 and bad.alive()
        log = bad.log().split("\n", 1)[1]   # past the command line, which has the URL
        assert "AUTH refused" in log, log[-2000:]
        assert ":wrong" not in log
    finally:
        cl.stop()


# --------------------------------------------------------------------------
# Liveness of the shard links


def test_frozen_master_caught_by_the_liveness_probe(tmp_path, cnode):
    """A master that keeps its TCP connections but answers nothing (SIGSTOP:
    a hung host, a network cut without a reset): with --ping-interval 1 the
    node's PING goes unanswered, /readyz turns 503 within 1 + 5 s (+ a
    check), and once the master answers again the node is ready and both
    channels deliver."""
    import os
    import signal
    cl = RedisCluster(tmp_path / "cluster-freeze", masters=3, node_timeout_ms=60000)
    frozen = None
    try:
        cl.start()
        by_shard = cl.channels_on_shards(1, stem="e2efz")
        victim = cl.masters()[1]
        name, other = by_shard[victim][0], by_shard[cl.masters()[0]][0]
        gw = cnode(cl, ["--ping-interval", "1"], seeds=[cl.masters()[0]])

        async def go():
            nonlocal frozen
            c = await ws(gw, [name, other])
            await async_wait_until(lambda: shard_numsub(cl, name) == 1, msg="subscribed")
            frozen = cl.node_by_port(victim).proc.pid
            os.kill(frozen, signal.SIGSTOP)
            t0 = time.monotonic()
            await async_wait_until(lambda: gw.readyz() == 503, timeout=12,
                                   msg="/readyz 503 with a frozen master")
            assert time.monotonic() - t0 >= 1.0   # not before the link was quiet
            os.kill(frozen, signal.SIGCONT)
            frozen = None
            await async_wait_until(lambda: gw.readyz() == 200, timeout=15,
                                   msg="/readyz 200 once the master answers")
            for n in (name, other):
                r = gw.publish({"channel": n, "data": n})
                assert r.status == 200, r
                await c.recv_until(lambda m, n=n: m.get("data") == n)
            await c.close()
        pgtest.run(go(), timeout=60)
        assert "liveness probe: no answer to PING" in gw.log()
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        cl.stop()
