"""Drain (SPEC §6, SIGTERM / SIGINT): /readyz turns 503, new connections get
503, WebSocket clients get close 1001 "going away" once their queue has
flushed, SSE streams get a `retry:` hint and end, and the process exits 0
within --drain-timeout."""

import asyncio
import json
import signal
import time

import pytest

from faultkit import RawWS, close_code, connections, nodes, open_stream  # noqa: F401
from pgtest import API_KEY, async_wait_until, run

BASE = ["--api-key", API_KEY]
PAD = "x" * 8000


def exit_code_within(gw, timeout):
    try:
        return gw.proc.wait(timeout=timeout)
    except Exception:
        return None


async def fill_stalled(gw, rds, reader, count):
    """Publish `count` 8 KB messages and a FIN on broadcast; wait until
    `reader` (a client that does read) has the FIN, so the node has them
    all queued for everyone."""
    def publish():
        for n in range(count):
            rds.publish("pushgate:broadcast", json.dumps({"event": "bulk", "data": {"n": n, "pad": PAD}}))
        rds.publish("pushgate:broadcast", json.dumps({"event": "FIN", "data": count}))
    await asyncio.get_running_loop().run_in_executor(None, publish)
    await async_wait_until(lambda: len(reader.msgs) == count + 1, 20,
                           msg="the reading client got everything")


def test_sigterm_drains_flushes_queues_then_exits_zero(nodes, rds):
    """A WS client that stalled with ~12 MB queued holds the drain open:
    meanwhile /readyz is 503, new WS and SSE requests get 503, /healthz 200;
    a reading WS client gets 1001 "going away", a reading SSE client gets
    `retry: 1000` then the end of the stream. When the stalled client reads
    again it gets every queued message, in order, then 1001; then the node
    exits 0."""
    gw = nodes(BASE + ["--queue-limit-bytes", str(64 << 20), "--drain-timeout", "60"])
    count = 1500

    async def scenario():
        stalled = RawWS(gw.port, rcvbuf=4096)
        assert stalled.status == 101
        ws = await open_stream(gw.port, "ws", keep=True)
        sse = await open_stream(gw.port, "sse", keep=True)
        await async_wait_until(lambda: connections(gw) == 3, 5, msg="3 connections")
        await fill_stalled(gw, rds, ws, count)

        gw.proc.send_signal(signal.SIGTERM)
        await async_wait_until(lambda: gw.readyz() == 503, 5, msg="/readyz 503")
        # the reading clients are let go
        await asyncio.wait_for(asyncio.gather(ws.done, sse.done), 10)
        assert ws.close == (1001, "going away")
        assert len(ws.msgs) == count + 1
        assert sse.retry == [1000]
        assert [m["data"] for m in sse.msgs][-1] == count
        # the stalled one holds the node in drain: nothing new is accepted
        assert gw.alive(), "node exited before the stalled client's queue flushed"
        r = gw.get("/readyz")
        assert (r.status, r.body) == (503, b"draining\n")
        assert gw.get("/healthz").status == 200
        c = await open_stream(gw.port, "ws")
        assert c.status == 503
        c.abort()
        c = await open_stream(gw.port, "sse")
        assert c.status == 503
        c.abort()
        assert gw.alive()

        # the stalled client reads: all of its queue, then the close
        frames = stalled.frames(timeout=30, until=lambda op, p: op == 8)
        texts = [json.loads(p) for op, p in frames if op == 1]
        assert [m["data"]["n"] for m in texts[:-1]] == list(range(count))
        assert texts[-1]["event"] == "FIN"
        assert frames[-1][0] == 8, "no close frame after the queue"
        assert close_code(frames[-1][1]) == (1001, "going away")
        stalled.close()
        rc = await asyncio.get_running_loop().run_in_executor(None, exit_code_within, gw, 10)
        assert rc == 0, f"exit code {rc}"

    run(scenario(), 90)


def test_drain_timeout_bounds_the_wait_for_a_client_that_never_reads(nodes, rds):
    """With --drain-timeout 2 a client that never reads cannot hold the
    node: it exits 0 about 2 s after SIGTERM (not before the queue had a
    chance, not much after)."""
    gw = nodes(BASE + ["--queue-limit-bytes", str(64 << 20), "--drain-timeout", "2"])

    async def scenario():
        stalled = RawWS(gw.port, rcvbuf=4096)
        ws = await open_stream(gw.port, "ws", keep=True)
        await async_wait_until(lambda: connections(gw) == 2, 5, msg="2 connections")
        await fill_stalled(gw, rds, ws, 1000)
        t0 = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, exit_code_within, gw, 12)
        took = time.monotonic() - t0
        assert rc == 0, f"exit code {rc}"
        assert 1.5 <= took <= 7, f"exited {took:.1f}s after SIGTERM with --drain-timeout 2"
        assert "drain timeout" in gw.log()
        stalled.close()
        ws.abort()

    run(scenario(), 60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_lets_clients_go_and_exits_zero_at_once(nodes, sig):
    """Nothing queued: WS gets 1001, SSE gets retry then ends, the node
    exits 0 without waiting for the drain timeout (30 s here)."""
    gw = nodes(BASE + ["--drain-timeout", "30"])

    async def scenario():
        ws = await open_stream(gw.port, "ws")
        sse = await open_stream(gw.port, "sse")
        await async_wait_until(lambda: connections(gw) == 2, 5, msg="2 connections")
        t0 = time.monotonic()
        gw.proc.send_signal(sig)
        await asyncio.wait_for(asyncio.gather(ws.done, sse.done), 10)
        assert ws.close == (1001, "going away")
        assert sse.retry == [1000]
        rc = await asyncio.get_running_loop().run_in_executor(None, exit_code_within, gw, 10)
        assert rc == 0
        assert time.monotonic() - t0 < 10, "waited for the drain timeout with nothing to flush"

    run(scenario(), 40)


def test_second_sigterm_stops_without_waiting(nodes, rds):
    gw = nodes(BASE + ["--queue-limit-bytes", str(64 << 20), "--drain-timeout", "60"])

    async def scenario():
        stalled = RawWS(gw.port, rcvbuf=4096)
        ws = await open_stream(gw.port, "ws", keep=True)
        await async_wait_until(lambda: connections(gw) == 2, 5, msg="2 connections")
        await fill_stalled(gw, rds, ws, 1000)
        gw.proc.send_signal(signal.SIGTERM)
        await async_wait_until(lambda: gw.readyz() == 503, 5, msg="draining")
        assert gw.alive()
        gw.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, exit_code_within, gw, 10)
        assert rc == 0
        stalled.close()
        ws.abort()

    run(scenario(), 40)
