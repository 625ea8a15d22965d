"""Per-channel positions on connect (SPEC §4 Recovery, §10; README "Recovery
without a total order"), on one Redis: `since=` on the WebSocket and SSE URL
and the SSE `Last-Event-ID` take a list `news:<id>,sports:<id>`, and each
channel resumes from its own entry (a bare id in the list covers the others);
a channel without one starts live. A bare `since=<id>` is one cut for every
channel, as before. Malformed or over-long lists are refused with 400 and a
JSON error, like a malformed since."""

import json
import random

import pytest

from faultkit import Publisher, check_exact, fcall, metric, nodes, open_stream  # noqa: F401
from pgtest import API_KEY, async_wait_until, http_request, run, wait_until

BASE = ["--api-key", API_KEY, "--public-topics", "news,sports,feed"]
CHANNELS = ("news", "sports", "feed")


async def resume(gw, method, channels, since):
    """A client of `channels` resuming from `since` (text) by `method`."""
    q = f"channels={','.join(channels)}"
    if method == "ws-query":
        c = await open_stream(gw.port, "ws", f"{q}&since={since}", keep=True)
    elif method == "sse-query":
        c = await open_stream(gw.port, "sse", f"{q}&since={since}", keep=True)
    elif method == "sse-last-event-id":
        # Last-Event-ID wins over since= (here since=1, which would replay
        # every channel's whole history if it were used)
        c = await open_stream(gw.port, "sse", f"{q}&since=1", last_event_id=since, keep=True)
    else:
        raise ValueError(method)
    assert c.status in (101, 200), f"{method}: refused {c.status}"
    return c


def per_channel(c):
    got = {}
    for m in c.msgs:
        got.setdefault(m["channel"], []).append(int(m["id"]))
    return got


METHODS = ["ws-query", "sse-query", "sse-last-event-id"]


@pytest.mark.parametrize("method", METHODS)
def test_each_channel_resumes_from_its_own_position_and_unlisted_ones_start_live(
        nodes, rds, method):
    """History on news, sports, feed and broadcast interleaved; the client
    lists news and sports at different positions (the list in an order of
    its own, a channel name with ':' in it would split at the last ':').
    news and sports get exactly what followed their own entry, then live;
    feed and broadcast, unlisted, get only live messages."""
    gw = nodes(BASE)
    hist = {ch: [] for ch in CHANNELS + ("broadcast",)}
    for n in range(16):
        ch = (CHANNELS + ("broadcast",))[n % 4]
        hist[ch].append(int(fcall(rds, ch, {"data": n})))
    # news resumes late, sports early: a single cut could not serve both
    pos = {"news": hist["news"][2], "sports": hist["sports"][0]}
    since = f"sports:{pos['sports']},news:{pos['news']}"
    # broadcast, unlisted, starts live: its history must have reached the
    # node before the client joins, or the last one still in flight is live
    # to it (an ASan run got it)
    wait_until(lambda: metric(gw, "pushgate_messages_received_total") >= len(hist["broadcast"]),
               5, msg="the node has heard broadcast's history")

    async def scenario():
        c = await resume(gw, method, CHANNELS, since)
        want = {"news": [i for i in hist["news"] if i > pos["news"]],
                "sports": [i for i in hist["sports"] if i > pos["sports"]]}
        await async_wait_until(lambda: len(c.ids) >= 4, 5, msg="history")
        live = {ch: int(fcall(rds, ch, {"data": "live"})) for ch in CHANNELS + ("broadcast",)}
        await async_wait_until(lambda: len(c.ids) >= 8, 5, msg="live on every channel")
        got = per_channel(c)
        for ch in ("news", "sports"):
            check_exact(got.get(ch, []), want[ch] + [live[ch]], f"{method} {ch}")
        for ch in ("feed", "broadcast"):
            check_exact(got.get(ch, []), [live[ch]], f"{method} {ch} (no entry: live)")
        assert c.notices == []
        c.abort()

    run(scenario(), 30)


@pytest.mark.parametrize("method", METHODS)
def test_a_bare_id_in_the_list_covers_the_unlisted_channels(nodes, rds, method):
    """since=<id>,news:<id2>: news from id2, every other channel of the
    connection (sports, broadcast) from the bare id."""
    gw = nodes(BASE)
    ids = [(ch, int(fcall(rds, ch, {"data": n})))
           for n, ch in enumerate(["news", "sports", "broadcast"] * 4)]
    bare = ids[3][1]
    news_pos = ids[9][1]

    async def scenario():
        c = await resume(gw, method, ("news", "sports"), f"{bare},news:{news_pos}")
        want = {"news": [i for ch, i in ids if ch == "news" and i > news_pos],
                "sports": [i for ch, i in ids if ch == "sports" and i > bare],
                "broadcast": [i for ch, i in ids if ch == "broadcast" and i > bare]}
        total = sum(len(v) for v in want.values())
        await async_wait_until(lambda: len(c.ids) >= total, 5, msg="history")
        live = int(fcall(rds, "news", {"data": "live"}))
        await async_wait_until(lambda: live in c.ids, 5, msg="live")
        want["news"].append(live)
        got = per_channel(c)
        for ch, w in want.items():
            check_exact(got.get(ch, []), w, f"{method} {ch}")
        c.abort()

    run(scenario(), 30)


@pytest.mark.parametrize("method", METHODS)
def test_a_bare_since_is_still_one_cut_for_every_channel(nodes, rds, method):
    """since=<id> alone: every channel (broadcast too) from that id, merged
    in id order as before lists existed."""
    gw = nodes(BASE)
    since = int(fcall(rds, "news", {"data": "before"}))
    ids = [int(fcall(rds, ("news", "sports", "broadcast")[n % 3], {"data": n}))
           for n in range(9)]

    async def scenario():
        c = await resume(gw, method, ("news", "sports"), str(since))
        await async_wait_until(lambda: len(c.ids) >= 9, 5, msg="history")
        live = int(fcall(rds, "sports", {"data": "live"}))
        await async_wait_until(lambda: len(c.ids) >= 10, 5, msg="live")
        assert c.order == ids + [live]
        c.abort()

    run(scenario(), 30)


def test_lists_at_random_positions_under_steady_publishers(nodes, redis_server):
    """Publishers FCALL ~150 msg/s each to news and sports while 24 clients
    (WS since=, SSE since=, SSE Last-Event-ID, percent-encoded or not)
    resume with a random position per channel, sometimes leaving feed
    listed at a position and sometimes not listing sports. Each client gets,
    per channel, exactly the ids after its own position (no gap, no
    duplicate at the seam); an unlisted channel gets only what came after
    the client was in."""
    gw = nodes(BASE + ["--history-size", "5000"])
    pubs = {ch: Publisher(redis_server, ch, rate=150) for ch in ("news", "sports")}
    rng = random.Random(12)

    async def scenario():
        clients = []
        for p in pubs.values():
            p.start()
        try:
            await async_wait_until(lambda: all(len(p.snapshot()) >= 150 for p in pubs.values()),
                                   10, msg="150 published on each")
            for k in range(24):
                method = METHODS[k % 3]
                pos = {"news": rng.choice(pubs["news"].snapshot()[-300:])}
                if k % 4 != 3:
                    pos["sports"] = rng.choice(pubs["sports"].snapshot()[-300:])
                items = list(pos.items())
                rng.shuffle(items)
                since = ",".join(f"{ch}:{i}" for ch, i in items)
                if k % 2 and method != "sse-last-event-id":
                    since = since.replace(":", "%3A").replace(",", "%2C")
                n0 = len(pubs["sports"].snapshot())
                c = await resume(gw, method, ("news", "sports"), since)
                clients.append((method, pos, n0, c))
            # publish on until every client has live messages on both
            # channels (an unlisted channel's come only after it joined)
            await async_wait_until(
                lambda: all({"news", "sports"} <= set(per_channel(c)) for *_, c in clients),
                10, msg="every client has messages of both channels")
        finally:
            for p in pubs.values():
                p.stop()
        for p in pubs.values():
            assert p.failures == []
        last = {ch: p.snapshot()[-1] for ch, p in pubs.items()}
        for method, pos, n0, c in clients:
            try:
                await async_wait_until(
                    lambda c=c: all(i in c.ids for i in last.values()), 10,
                    msg=f"{method} {pos}: the last ids")
            except AssertionError:
                g = per_channel(c)
                raise AssertionError(f"{method} {pos} n0={n0} last={last} got news "
                                     f"{len(g.get('news', []))} {g.get('news', [])[-3:]} sports "
                                     f"{len(g.get('sports', []))} {g.get('sports', [])[:3]}"
                                     f"{g.get('sports', [])[-3:]} controls={c.controls} "
                                     f"close={c.close} done={c.done.done()}")
        for method, pos, n0, c in clients:
            got = per_channel(c)
            assert c.notices == [], f"{method} {pos}: unexpected notice"
            for ch, p in pubs.items():
                ids = p.snapshot()
                if ch in pos:
                    check_exact(got.get(ch, []), [i for i in ids if i > pos[ch]],
                                f"{method} {ch} from {pos[ch]}")
                else:
                    # live from when it joined (a few in flight then may
                    # come): a contiguous tail, no history
                    g = got.get(ch, [])
                    assert g and g == ids[ids.index(g[0]):], f"{method} {ch}: not a live tail"
                    assert ids.index(g[0]) >= n0 - 5, f"{method} {ch}: history replayed"
            c.abort()

    run(scenario(), 60)


def ws_upgrade_headers():
    return {"Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def refused(gw, how, since):
    """The status and JSON error of a /ws or /sse request carrying `since`
    (already URL-safe) by `how`."""
    if how == "ws-query":
        r = http_request(gw.port, "GET", f"/ws?channels=news,sports&since={since}",
                         headers=ws_upgrade_headers())
    elif how == "sse-query":
        r = http_request(gw.port, "GET", f"/sse?channels=news,sports&since={since}")
    else:
        r = http_request(gw.port, "GET", "/sse?channels=news,sports",
                         headers={"Last-Event-ID": since})
    return r.status, json.loads(r.body)["error"]


BAD = [
    ("abc", "since must be a message id (decimal digits)"),
    ("12a", "since must be a message id (decimal digits)"),
    ("news:", "since: need an id of 1..19 digits after the last ':'"),
    ("news:abc", "since: need an id of 1..19 digits after the last ':'"),
    ("news:12345678901234567890", "since: need an id of 1..19 digits after the last ':'"),
    (":5", "since: invalid channel name"),
    ("news:1,news:2", "since lists a channel twice"),
    ("1,2", "since has more than one bare id"),
    ("news:1,,sports:2", "since: need an id of 1..19 digits or <channel>:<id>"),
    ("news:1,", "since: need an id of 1..19 digits or <channel>:<id>"),
]


@pytest.mark.parametrize("how", ["ws-query", "sse-query", "sse-last-event-id"])
def test_malformed_lists_are_refused_with_400_and_a_reason(nodes, how):
    gw = nodes(BASE)
    for since, why in BAD:
        assert refused(gw, how, since) == (400, why), since
    # more entries than a connection can have channels (64 + broadcast + user)
    many = ",".join(f"c{i}:1" for i in range(67))
    assert refused(gw, how, many) == (400, "since lists more than 66 channels")
    # longer than the limit: refused, not cut (a cut list would start
    # channels live without a word)
    long = ",".join(f"{'x' * 100}{i}:1764277200124000" for i in range(40))
    assert len(long) > 4096
    what = "Last-Event-ID" if how == "sse-last-event-id" else "since"
    assert refused(gw, how, long) == (400, f"{what} is longer than 4096 bytes")
    # the node still serves a good list right after
    async def good():
        c = await resume(gw, how, ("news", "sports"), "news:1,sports:2")
        c.abort()
    run(good(), 10)
