"""One host, every core (SPEC §11, issue 13): `--workers N` runs a supervisor
(the process the test started) that forks N workers sharing --listen.

Which worker holds a client is read from the kernel, not guessed: the
supervisor's children are its workers (/proc/<pid>/task/*/children) and the
worker holding the server end of a TCP connection is the one with that
socket among its descriptors (/proc/net/tcp + /proc/<pid>/fd). A client
connects, the test waits until a worker has accepted it, and only then sends
its request, so even a refused request (401) is known to have been refused by
that worker.

Every supervisor is stopped by PID at teardown (SIGTERM, SIGKILL after 20 s);
any pushgate process still running on the test's port after that (a worker
that outlived its supervisor) is SIGKILLed by PID and fails the test."""

import asyncio
import collections
import http.client
import json
import math
import os
import signal
import time

import pytest

from faultkit import (Publisher, RawWS, StreamClient, check_exact, close_code, fcall,
                      sse_request_bytes, ws_handshake_bytes)
from pgtest import (API_KEY, Response, async_wait_until, child_pids, metric_samples,
                    mint_hs256, port_listening, proc_alive, proc_start_time, pushgate_bin,
                    run, tcp_connection_owners, wait_until)
import pgtest

SECRET = "s"
BASE = ["--api-key", API_KEY, "--ping-interval", "300", "--public-topics", "news,bulk"]
PREFIX = "pushgate:"
PAD = "x" * 8000
SPEC_FAMILIES = ("pushgate_connections", "pushgate_messages_received_total",
                 "pushgate_deliveries_total", "pushgate_slow_consumer_disconnects_total",
                 "pushgate_publish_requests_total", "pushgate_redis_connected",
                 "pushgate_redis_reconnects_total", "pushgate_subscribed_channels")


# --------------------------------------------------------------------------
# A supervisor and its workers


class Pool(pgtest.Gateway):
    """`pushgate --workers <n> --node-id <name>` (optionally under
    `taskset -c <cpus>`, which execs it: the pid stays the supervisor's).
    .workers() lists the live workers now and remembers every one seen."""

    def __init__(self, redis, tmpdir, workers, args, name, cpus=None):
        super().__init__(redis, tmpdir, name=name,
                         args=["--workers", str(workers), "--node-id", name] + list(args))
        self.n = workers if isinstance(workers, int) else None
        self.cpus = cpus
        self.seen = set()   # (pid, start time) of every worker seen

    def command(self):
        cmd = super().command()
        return ["taskset", "-c", self.cpus] + cmd if self.cpus else cmd

    def workers(self):
        """The supervisor's live (not zombie) children, sorted."""
        out = []
        for pid in child_pids(self.pid) if self.proc is not None else []:
            st = proc_start_time(pid)
            if st is not None:
                self.seen.add((pid, st))
                out.append(pid)
        return out

    def wait_workers(self, count=None, timeout=10):
        count = self.n if count is None else count
        return wait_until(lambda: len(self.workers()) == count and self.workers(),
                          timeout, msg=f"{self.name}: {count} workers "
                                       f"(have {self.workers()})")

    def owners(self):
        """{client port: worker pid} of every connection a worker holds."""
        return tcp_connection_owners(self.workers(), self.port)

    def strays(self):
        """(pid, start time) of live processes running the pushgate binary
        with this pool's --listen, the supervisor excepted."""
        needle = f"127.0.0.1:{self.port}".encode()
        out = set()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == self.pid:
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0] == pushgate_bin().encode() and needle in argv:
                st = proc_start_time(int(d))
                if st is not None:
                    out.add((int(d), st))
        return out

    def leftovers(self):
        return sorted({(p, s) for p, s in self.seen if proc_alive(p, s)} | self.strays())


@pytest.fixture
def pool(redis_server, tmp_path):
    """make(workers, args=BASE, name=None, cpus=None, start=True) -> Pool,
    started and with all its workers up. Teardown: SIGTERM by PID; a pool
    still running must exit 0, and no worker may outlive its supervisor."""
    made = []

    def make(workers, args=BASE, name=None, cpus=None, start=True):
        p = Pool(redis_server, tmp_path / "gw", workers, args,
                 name or f"pg{len(made) + 1}", cpus)
        made.append(p)
        if start:
            p.start()
            if p.n is not None:
                p.wait_workers()
        return p

    yield make
    bad = []
    for p in made:
        if p.proc is None:
            continue
        running = p.alive()
        if running:
            p.workers()
        rc = p.stop(signal.SIGTERM, timeout=20)
        if running and rc != 0:
            bad.append(f"{p.name}: exit {rc} after SIGTERM\n{pgtest.tail(p.logfile, 60)}")
        try:
            wait_until(lambda: not p.leftovers(), 3)
        except AssertionError:
            left = p.leftovers()
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            bad.append(f"{p.name}: processes left after the supervisor exited: {left}")
        if p in pgtest.ACTIVE:
            pgtest.ACTIVE.remove(p)
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------
# Clients whose worker is known


async def open_owned(gw, kind, count=1, query="", keep=False, timeout=5.0):
    """Connect `count` StreamClients, wait until a worker has accepted each
    TCP connection, then send each its WS handshake / SSE request and wait
    for the status lines. Returns [(client, worker pid)]; client.status is
    the answer."""
    loop = asyncio.get_running_loop()
    conns = await asyncio.gather(*(asyncio.wait_for(loop.create_connection(
        lambda: StreamClient(kind, keep), "127.0.0.1", gw.port), timeout)
        for _ in range(count)))
    clients = [c for _, c in conns]
    ports = [port_of(c) for c in clients]

    def all_owned():
        m = gw.owners()
        return m if all(p in m for p in ports) else None
    owners = await async_wait_until(all_owned, timeout,
                                    msg=f"workers accepting the connections from {ports}")
    for c in clients:
        c.transport.write(ws_handshake_bytes(gw.port, query) if kind == "ws"
                          else sse_request_bytes(gw.port, query))
    await asyncio.wait_for(asyncio.gather(*(asyncio.shield(c.headers_done)
                                            for c in clients)), timeout)
    return [(c, owners[p]) for c, p in zip(clients, ports)]


async def open_until(gw, kind, enough, query="", status=None, keep=False, batch=None,
                     at_most=200):
    """Open clients (batch at a time) until enough(Counter {worker pid:
    clients}) holds. Every answer must be `status` (default 101 for ws, 200
    for sse). Returns (clients, {client: worker pid})."""
    status = status or (101 if kind == "ws" else 200)
    batch = batch or max(1, len(gw.workers()))
    clients, owner = [], {}
    while not enough(collections.Counter(owner.values())):
        if len(clients) >= at_most:
            raise AssertionError(
                f"{len(clients)} {kind} connections, held by "
                f"{dict(collections.Counter(owner.values()))}; workers {gw.workers()}")
        got = await open_owned(gw, kind, batch, query, keep)
        for c, pid in got:
            clients.append(c)
            owner[c] = pid
            assert c.status == status, \
                f"{kind}?{query[:40]} on worker {pid}: {c.status}, expected {status}"
    return clients, owner


def on_every_worker(gw, per_worker=1, total=0):
    """An `enough` for open_until: each current worker holds per_worker
    clients and there are at least total."""
    workers = gw.workers()
    return lambda counts: (sum(counts.values()) >= total and
                           all(counts[w] >= per_worker for w in workers))


def abort_all(clients):
    for c in clients:
        c.abort()


def port_of(c):
    return c.transport.get_extra_info("sockname")[1]


# --------------------------------------------------------------------------
# Metrics


def scrape(gw, path="/metrics"):
    """(worker pid, Response) of one GET on a fresh connection, the worker
    being the one that accepted it."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
    try:
        conn.connect()
        port = conn.sock.getsockname()[1]
        pid = wait_until(lambda: gw.owners().get(port), 5,
                         msg=f"a worker accepting the connection from port {port}")
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
        return pid, Response(r.status, r.reason, {k.lower(): v for k, v in r.getheaders()},
                             body)
    finally:
        conn.close()


def scrape_every_worker(gw, path="/metrics", at_most=100):
    """{worker pid: Response}: one answer from each current worker."""
    workers = set(gw.workers())
    got = {}
    for _ in range(at_most):
        pid, r = scrape(gw, path)
        got.setdefault(pid, r)
        if workers <= set(got):
            return got
    raise AssertionError(f"{at_most} requests reached only {sorted(got)} of {sorted(workers)}")


def series(text, name, **labels):
    """{worker label (None for the total): value} of the samples of `name`
    whose labels other than worker are exactly `labels`."""
    out = {}
    for _, lb, v in metric_samples(text, name):
        w = lb.pop("worker", None)
        if lb == labels:
            assert w not in out, f"two samples {name}{labels} worker={w}"
            out[w] = v
    return out


def totals(text, n):
    """{(family, labels without worker): total} of every sample that has
    per-worker series, after checking that the workers are exactly "1".."n"
    and that the total is the sum of its worker series."""
    groups = collections.defaultdict(dict)
    for name, lb, v in metric_samples(text):
        w = lb.pop("worker", None)
        groups[(name, tuple(sorted(lb.items())))][w] = v
    want = {str(i) for i in range(1, n + 1)}
    out = {}
    for key, g in groups.items():
        per = {w: v for w, v in g.items() if w is not None}
        if not per:
            continue
        assert set(per) == want, f"{key}: worker series {sorted(per)}, expected {sorted(want)}"
        assert None in g, f"{key}: worker series but no total"
        assert math.isclose(g[None], sum(per.values()), rel_tol=1e-4, abs_tol=1e-6), \
            f"{key}: total {g[None]} is not the sum of {per}"
        out[key] = g[None]
    families = {k[0] for k in out}
    missing = [f for f in SPEC_FAMILIES if f not in families]
    assert not missing, f"no per-worker series for {missing}"
    return out


def ws_connections(text):
    """({worker label: WS connections} and the total) from one scrape."""
    s = series(text, "pushgate_connections", transport="ws")
    return {w: v for w, v in s.items() if w is not None}, s.get(None)


def numsub(rds, channel):
    return dict(rds.pubsub_numsub(channel)).get(channel, 0)


def token(sub, secret=SECRET):
    return mint_hs256(secret, {"sub": sub})


def exit_code_within(gw, timeout):
    try:
        return gw.proc.wait(timeout=timeout)
    except Exception:
        return None


# --------------------------------------------------------------------------
# The tests


def test_workers_share_the_port_and_each_serves_clients(pool, rds):
    """40 WebSocket clients on one port land on several of 4 workers; the
    per-worker connection series say exactly how many each holds; each
    worker has its own Redis subscription (NUMSUB counts one per worker on
    broadcast, one per worker holding a `news` client); one FCALL on
    broadcast and one on news reach all 40; each worker logs under its own
    node id <node-id>-w<i>."""
    gw = pool(4, name="pg")
    assert len(gw.workers()) == 4, gw.workers()
    assert numsub(rds, PREFIX + "broadcast") == 4, "one broadcast subscription per worker"
    for i in range(1, 5):
        wait_until(lambda: f"node=pg-w{i} " in gw.log(), 5, msg=f"log lines of node pg-w{i}")

    async def scenario():
        clients = []
        try:
            clients, owner = await open_until(gw, "ws", lambda c: sum(c.values()) >= 40,
                                              query="channels=news", batch=40)
            held = collections.Counter(owner.values())
            assert len(held) >= 2, f"40 connections all went to one worker: {dict(held)}"

            def series_match():
                per, total = ws_connections(gw.metrics())
                return (total == 40 and
                        sorted(v for v in per.values() if v) == sorted(held.values()))
            await async_wait_until(series_match, 3,
                                   msg=f"per-worker ws series {sorted(held.values())} "
                                       f"and a total of 40 (last: {ws_connections(gw.metrics())})")
            await async_wait_until(lambda: numsub(rds, PREFIX + "news") == len(held), 5,
                                   msg=f"{len(held)} subscribers on news")

            rid = int(fcall(rds, "broadcast", {"event": "hello", "data": 1}))
            await async_wait_until(lambda: all(c.ids == [rid] for c in clients), 5,
                                   msg="the broadcast on all 40 clients")
            rid2 = int(fcall(rds, "news", {"event": "story", "data": 2}))
            await async_wait_until(lambda: all(c.ids == [rid, rid2] for c in clients), 5,
                                   msg="the news message on all 40 clients")
            assert not any(c.done.done() for c in clients)
        finally:
            abort_all(clients)

    run(scenario(), 60)


def test_kill_9_of_one_worker_is_replaced_and_others_clients_see_nothing(
        pool, redis_server, rds):
    """While 100 messages/s are published on broadcast, one of 3 workers is
    SIGKILLed: its clients lose their connection; every client of the other
    workers stays connected and gets every message exactly once, in order,
    with no recovery notice; a new worker pid appears within 2 s, /readyz
    is 200 again, each worker holds its own broadcast subscription again and
    the new worker serves clients."""
    gw = pool(3)

    async def scenario():
        clients = fresh = []
        pub = Publisher(redis_server, "broadcast", rate=100)
        try:
            clients, owner = await open_until(gw, "ws", on_every_worker(gw, 3, 24))
            victim = collections.Counter(owner.values()).most_common(1)[0][0]
            doomed = [c for c in clients if owner[c] == victim]
            survivors = [c for c in clients if owner[c] != victim]
            pub.start()
            await async_wait_until(lambda: all(len(c.ids) >= 5 for c in clients), 5,
                                   msg="every client receiving")
            before = set(gw.workers())
            os.kill(victim, signal.SIGKILL)
            t0 = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(c.done for c in doomed)), 5)
            assert all(c.close is None for c in doomed), "a close frame from a killed process?"

            new = await async_wait_until(lambda: set(gw.workers()) - before, 2,
                                         msg="a new worker pid")
            took = time.monotonic() - t0
            assert victim not in gw.workers()
            await async_wait_until(lambda: len(gw.workers()) == 3, 5, msg="3 workers again")
            await async_wait_until(lambda: gw.readyz() == 200, 10, msg="/readyz 200 again")
            await async_wait_until(lambda: numsub(rds, PREFIX + "broadcast") == 3, 5,
                                   msg="3 broadcast subscriptions again")
            # keep publishing a while with the new worker in place
            mark = len(pub.snapshot())
            await async_wait_until(lambda: len(pub.snapshot()) >= mark + 50, 5,
                                   msg="50 more messages published")
            fresh, fowner = await open_until(gw, "ws", lambda c: any(p in new for p in c))
            pub.stop()
            expected = pub.snapshot()
            assert not pub.failures, pub.failures[:3]
            await async_wait_until(
                lambda: all(c.last_id == expected[-1] for c in survivors), 5,
                msg="the last message on every surviving client")
            for c in survivors:
                check_exact(c.ids, expected, f"client on worker {owner[c]}")
                assert not c.done.done() and not c.notices and not c.controls, \
                    (c.done.done(), c.notices, c.controls)
            # the new worker delivers to its clients
            rid = int(fcall(rds, "broadcast", {"event": "FIN", "data": None}))
            await async_wait_until(lambda: all(c.last_id == rid for c in fresh), 5,
                                   msg="FIN on the clients of the new worker")
            print(f"replacement appeared {took:.2f} s after kill -9")
        finally:
            if pub.is_alive():
                pub.stop()
            abort_all(clients + fresh)

    run(scenario(), 90)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_sigterm_drains_all_workers_and_exits_zero(pool, sig):
    """SIGTERM (or SIGINT) to the supervisor: every WebSocket client, on every one of 3
    workers, gets close 1001; every SSE client a `retry:` hint and then the
    end of its stream; with nothing to flush the supervisor exits 0 well
    before --drain-timeout (20 s), and no worker is left."""
    gw = pool(3, BASE + ["--drain-timeout", "20"])

    async def scenario():
        ws = sse = []
        try:
            ws, wowner = await open_until(gw, "ws", on_every_worker(gw, 2))
            sse, sowner = await open_until(gw, "sse", on_every_worker(gw, 1))
            await async_wait_until(
                lambda: series(gw.metrics(), "pushgate_connections", transport="sse").get(None)
                == len(sse), 3, msg="SSE clients counted")
            t0 = time.monotonic()
            gw.proc.send_signal(sig)
            await asyncio.wait_for(asyncio.gather(*(c.done for c in ws + sse)), 15)
            wrong = {wowner[c]: c.close for c in ws if not c.close or c.close[0] != 1001}
            assert not wrong, f"WebSocket clients (by worker) without close 1001: {wrong}"
            no_retry = [sowner[c] for c in sse if not c.retry]
            assert not no_retry, f"SSE streams ended without retry: on workers {no_retry}"
            rc = await asyncio.get_running_loop().run_in_executor(None, exit_code_within, gw, 15)
            assert rc == 0, f"supervisor exit code {rc}"
            assert time.monotonic() - t0 < 10, "waited for the drain timeout with nothing to flush"
            assert not gw.leftovers(), gw.leftovers()
        finally:
            abort_all(ws + sse)

    run(scenario(), 60)


def test_readyz_is_503_while_a_worker_is_not_ready(pool):
    """A worker that hangs (SIGSTOP here) would leave its share of new
    connections waiting: /readyz, asked of the others, turns 503 within 10 s
    (a worker's state is refreshed every second, and taken as stale after a
    few), and 200 again once it runs (SIGCONT)."""
    gw = pool(3)
    hung = gw.workers()[0]
    os.kill(hung, signal.SIGSTOP)
    try:
        wait_until(lambda: gw.readyz() == 503, 10, msg=f"/readyz 503 with worker {hung} stopped")
    finally:
        os.kill(hung, signal.SIGCONT)
    wait_until(lambda: gw.readyz() == 200, 5, msg="/readyz 200 once it runs again")
    assert hung in gw.workers()


def test_a_draining_worker_stops_accepting_at_once(pool, rds):
    """One worker is held in its drain by a client that does not read (12 MB
    queued for it); the others finish theirs and exit. Meanwhile nothing
    listens on the port any more: a new connection is refused outright, not
    queued nor answered 503. Once the client reads, it gets its whole queue
    then 1001, and the supervisor exits 0."""
    gw = pool(3, BASE + ["--queue-limit-bytes", str(64 << 20), "--drain-timeout", "60"])
    count = 1500

    async def scenario():
        readers = []
        stalled = RawWS(gw.port, query="channels=bulk", rcvbuf=4096)
        try:
            assert stalled.status == 101
            sport = stalled.sock.getsockname()[1]
            held = await async_wait_until(lambda: gw.owners().get(sport), 5,
                                          msg="the stalled client's worker")
            readers, rowner = await open_until(gw, "ws", lambda c: c[held] >= 1,
                                               query="channels=bulk", batch=1)
            reader = next(c for c in readers if rowner[c] == held)
            await async_wait_until(lambda: numsub(rds, PREFIX + "bulk") >= 1, 5,
                                   msg="bulk subscribed")

            def publish():
                for n in range(count):
                    rds.publish(PREFIX + "bulk", json.dumps({"data": {"n": n, "pad": PAD}}))
                rds.publish(PREFIX + "bulk", json.dumps({"event": "FIN", "data": count}))
            await asyncio.get_running_loop().run_in_executor(None, publish)
            await async_wait_until(lambda: len(reader.ids) == count + 1, 20,
                                   msg="the reader beside the stalled client got everything")

            gw.proc.send_signal(signal.SIGTERM)
            await async_wait_until(lambda: gw.workers() == [held], 10,
                                   msg=f"only the held worker {held} left "
                                       f"(have {gw.workers()})")
            assert gw.alive()
            refused = [port_listening(gw.port) for _ in range(20)]
            assert not any(refused), \
                f"{sum(refused)} of 20 connections accepted while every worker drains"

            frames = await asyncio.get_running_loop().run_in_executor(
                None, lambda: stalled.frames(timeout=30, until=lambda op, p: op == 8))
            texts = [json.loads(p) for op, p in frames if op == 1]
            assert len(texts) == count + 1 and texts[-1]["event"] == "FIN", len(texts)
            assert frames[-1][0] == 8 and close_code(frames[-1][1])[0] == 1001, frames[-1]
            stalled.close()
            rc = await asyncio.get_running_loop().run_in_executor(None, exit_code_within, gw, 15)
            assert rc == 0, f"supervisor exit code {rc}"
        finally:
            stalled.close()
            abort_all(readers)

    run(scenario(), 120)


def test_sighup_reloads_keys_on_every_worker(pool, tmp_path):
    """--jwt-secret-file rotated from secA to secB and SIGHUP sent to the
    supervisor: pushgate_key_reloads_total{result="ok"} rises on each
    worker's series; then a secB token is accepted (101) by every worker and
    a secA token refused (401) by every worker, where before the reload it
    was the other way round."""
    secrets = tmp_path / "jwt-secrets"
    secrets.write_text("secA\n")
    gw = pool(3, ["--api-key", API_KEY, "--jwt-secret-file", str(secrets)])

    def reloads():
        return series(gw.metrics(), "pushgate_key_reloads_total", result="ok")

    async def scenario():
        opened = []
        try:
            for sec, status in (("secA", 101), ("secB", 401)):
                cs, _ = await open_until(gw, "ws", on_every_worker(gw),
                                         query="token=" + token("42", sec), status=status)
                opened += cs
            before = reloads()
            assert set(before) == {None, "1", "2", "3"}, before
            tmp = secrets.with_suffix(".new")
            tmp.write_text("secB\n")
            os.replace(tmp, secrets)
            os.kill(gw.pid, signal.SIGHUP)
            await async_wait_until(
                lambda: all(v > before[w] for w, v in reloads().items()), 5,
                msg=f"key_reloads_total ok to rise on every worker and in total "
                    f"(before {before}, now {reloads()})")
            failed = series(gw.metrics(), "pushgate_key_reloads_total", result="failed")
            assert not any(failed.values()), failed
            for sec, status in (("secB", 101), ("secA", 401)):
                cs, _ = await open_until(gw, "ws", on_every_worker(gw),
                                         query="token=" + token("42", sec), status=status)
                opened += cs
        finally:
            abort_all(opened)

    run(scenario(), 60)


def test_metrics_totals_are_equal_from_every_worker(pool, rds):
    """With clients on each of 3 workers and 3 messages delivered, /metrics
    asked of each worker (the worker being the one that accepted the
    connection) answers, within a second of the last change, the same totals,
    each the sum of its worker="1".."3" series; the totals say what happened
    (connections, deliveries), and the per-worker connection series say
    where the kernel put each client."""
    gw = pool(3)

    async def scenario():
        clients = []
        try:
            clients, owner = await open_until(gw, "ws", on_every_worker(gw, 2))
            for n in range(3):
                fcall(rds, "broadcast", {"event": "m", "data": n})
            await async_wait_until(lambda: all(len(c.ids) == 3 for c in clients), 5,
                                   msg="3 messages on every client")
            t_last = time.monotonic()
            seen = {}

            def agree():
                got = scrape_every_worker(gw)
                seen.clear()
                for pid, r in got.items():
                    assert r.status == 200, r
                    seen[pid] = totals(r.body.decode(), 3)
                first = next(iter(seen.values()))
                return all(t == first for t in seen.values()) and first
            loop = asyncio.get_running_loop()
            first = await loop.run_in_executor(None, lambda: wait_until(
                agree, 2.5, interval=0.05, msg="the same totals from every worker"))
            took = time.monotonic() - t_last
            assert took <= 2.5, f"totals agreed only {took:.1f} s after the last change"
            key = ("pushgate_connections", (("transport", "ws"),))
            assert first[key] == len(clients), (first[key], len(clients))
            key = ("pushgate_deliveries_total", (("transport", "ws"),))
            assert first[key] >= 3 * len(clients), (first[key], len(clients))
            # where the kernel put each client, worker by worker
            per, _ = ws_connections(gw.metrics())
            held = collections.Counter(owner.values())
            assert sorted(per.values()) == sorted(held.values()), (per, dict(held))
        finally:
            abort_all(clients)

    run(scenario(), 60)


def test_crash_loop_is_reported_and_the_supervisor_stops(pool):
    """One worker dies as soon as it is started, again and again: the test
    SIGKILLs it and then every replacement the moment it appears, as the OOM
    killer or a crash at start-up would (a bad option cannot do this: it is
    refused by the supervisor with exit 2 before any worker exists). The two
    other workers are left alone. After more than 5 deaths (within 30 s) the
    supervisor logs "crash loop", stops the two others and exits 1; no worker
    is left."""
    gw = pool(3, BASE + ["--drain-timeout", "3"])
    originals = gw.workers()
    others = {(p, proc_start_time(p)) for p in originals[1:]}
    killed = []

    def kill(pid):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append((time.monotonic(), pid))
        except ProcessLookupError:
            pass

    kill(originals[0])
    log_at = len(gw.log())

    def kill_new_ones_until_exit():
        # Only until the supervisor has given up: a child it forks after
        # that is no worker (under ASan, LeakSanitizer's tracer at exit).
        if "crash loop" not in gw.log()[log_at:]:
            for pid in gw.workers():
                if pid not in originals and pid not in [p for _, p in killed]:
                    kill(pid)
        return gw.proc.poll() is not None
    try:
        wait_until(kill_new_ones_until_exit, 60, interval=0.01, msg="the supervisor to exit")
    except AssertionError as e:
        raise AssertionError(f"{e} after {len(killed)} worker deaths") from None
    rc = gw.proc.returncode
    span = killed[-1][0] - killed[0][0] if killed else 0
    assert rc == 1, f"supervisor exit code {rc} after {len(killed)} worker deaths"
    assert len(killed) >= 6, f"gave up after only {len(killed)} deaths"
    assert "crash loop" in gw.log()
    assert span <= 30, f"the deaths took {span:.1f} s"
    wait_until(lambda: not any(proc_alive(p, s) for p, s in others), 5,
               msg="the two healthy workers stopped")
    assert not gw.leftovers(), gw.leftovers()


def test_control_order_counts_every_worker(pool, rds):
    """With 3 workers, FCALL pushgate_disconnect answers 3 (and POST
    /api/disconnect {"nodes":3}); the user's connections on every worker
    are closed 4000; each worker held its own subscription to the user's
    channel; an anonymous client on each worker is untouched."""
    gw = pool(3, ["--api-key", API_KEY, "--jwt-secret", SECRET, "--allow-anonymous"])

    async def scenario():
        u42 = u43 = anon = []
        try:
            u42, o42 = await open_until(gw, "ws", on_every_worker(gw),
                                        query="token=" + token("42"))
            u43, o43 = await open_until(gw, "ws", on_every_worker(gw),
                                        query="token=" + token("43"))
            anon, oanon = await open_until(gw, "ws", on_every_worker(gw))
            for user in ("42", "43"):
                await async_wait_until(lambda: numsub(rds, PREFIX + "user:" + user) == 3, 5,
                                       msg=f"one subscription to user:{user} per worker")
            n = rds.execute_command("FCALL", "pushgate_disconnect", 0, "42")
            assert n == 3, f"FCALL pushgate_disconnect answered {n}"
            await asyncio.wait_for(asyncio.gather(*(c.done for c in u42)), 5)
            wrong = {o42[c]: c.close for c in u42 if not c.close or c.close[0] != 4000}
            assert not wrong, f"user 42 closes by worker: {wrong}"
            r = gw.api("/api/disconnect", {"user": "43"})
            assert (r.status, r.json()) == (200, {"nodes": 3}), r
            await asyncio.wait_for(asyncio.gather(*(c.done for c in u43)), 5)
            wrong = {o43[c]: c.close for c in u43 if not c.close or c.close[0] != 4000}
            assert not wrong, f"user 43 closes by worker: {wrong}"
            rid = int(fcall(rds, "broadcast", {"event": "FIN", "data": None}))
            await async_wait_until(lambda: all(c.ids == [rid] for c in anon), 5,
                                   msg="the anonymous clients still receive")
            assert not any(c.done.done() for c in anon)
        finally:
            abort_all(u42 + u43 + anon)

    run(scenario(), 60)


def test_workers_auto_is_one_per_cpu_in_the_affinity_mask(pool):
    """`--workers auto` under `taskset -c <one cpu>` is today's single
    process (no children, no worker series); under two CPUs it is a
    supervisor with two workers."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs in the affinity mask")
    one = pool("auto", cpus=str(cpus[0]), name="one")
    wait_until(lambda: one.readyz() == 200, 5)
    assert one.workers() == [], f"one CPU, yet children {one.workers()}"
    assert "worker=" not in one.metrics()
    two = pool("auto", cpus=f"{cpus[0]},{cpus[1]}", name="two")
    two.wait_workers(2)
    per, _ = ws_connections(two.metrics())
    assert set(per) == {"1", "2"}, per
