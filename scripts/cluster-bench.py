#!/usr/bin/python3
"""cluster-bench - one Redis vs a 3-master Redis Cluster under pushgate-bench,
and the time from a master kill to the first delivery after it (issue #12,
README "Performance", "Redis Cluster").

    scripts/cluster-bench.py [options] [SET...]
    scripts/cluster-bench.py SET... --rates 1000 3000 --node-timeout 1000 5000
        (the SETs first when a list option comes last)

SETs (default: users broadcast max kill):
  users      one node, 10,000 WebSocket clients as 10,000 users (JWT), messages
             to random users by POST /api/publish at each --rates rate for
             --duration s, on one Redis and on a 3-master cluster (no replicas)
  max        the same, published unpaced (--rate 0, --publish-conns, default
             32 requests in flight): the rate achieved in each topology
  broadcast  1,000 WebSocket clients on `broadcast`, 1000 msg/s by the API
  kill       a 3-master + 3-replica cluster (cluster-node-timeout --node-timeout
             ms, repeatable), one node, one WebSocket client on a channel owned
             by master M, a publisher sending the one-key FCALL pushgate_publish
             every --every-ms to M; kill -9 M: time to the first delivery of a
             message published after the kill, to the first publish Redis
             accepted again, to /readyz 200 again; acknowledged publishes never
             delivered. --kill-runs runs per node timeout, a fresh cluster each;
             the node keeps --history-size messages per channel (default
             5000: with pushgate's default 100 a channel at 100 msg/s loses
             whatever the promoted master took before the node was back)

Redis CPU is INFO cpu (used_cpu_sys + used_cpu_user) of the one Redis and of
each master, read when pushgate-bench starts publishing and when it has
drained (its "publishing ..." and "collecting results" lines), divided by the
messages delivered; the node's CPU per message is the bench's own (--server-pid,
same window). The node runs on CPU 0 (taskset), the bench on CPU 1, Redis
unpinned, as scripts/bench.sh does. Every process started here is stopped by
PID on exit. Loopback only. One JSON line per run is appended to --out and a
table printed at the end.
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import redis as redis_py  # noqa: E402
import websockets  # noqa: E402

import pgtest  # noqa: E402
from clusterkit import PREFIX, RedisCluster, key_slot  # noqa: E402
from pgtest import free_port, http_request, stop_process, tail, wait_until  # noqa: E402

SECRET = f"clbench-secret-{os.getpid()}"
APIKEY = f"clbench-key-{os.getpid()}"
STARTED = []   # everything with .stop(), stopped in reverse order on exit


def say(*a):
    print("==", *a, file=sys.stderr, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# --------------------------------------------------------------------------
# Processes


class Node:
    """One pushgate node on CPU 0, --log-level warn, its log in tmpdir."""

    def __init__(self, gw_bin, tmpdir, redis_url, extra=(), log_level="warn"):
        self.bin = gw_bin
        self.log_level = log_level
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = redis_url
        self.extra = list(extra)
        self.port = None
        self.proc = None
        self.logfile = self.dir / "node.log"

    @property
    def pid(self):
        return self.proc.pid

    def readyz(self):
        try:
            return http_request(self.port, "GET", "/readyz", timeout=1).status
        except OSError:
            return None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGATE_")}
        self.port = free_port()
        cmd = ["taskset", "-c", "0", self.bin, "--listen", f"127.0.0.1:{self.port}",
               "--redis-url", self.url, "--jwt-secret", SECRET, "--allow-anonymous",
               "--api-key", APIKEY, "--public-topics", "bench,kill*",
               "--log-level", self.log_level] + self.extra
        with open(self.logfile, "ab") as log:
            log.write(f"### {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        STARTED.append(self)
        wait_until(lambda: self.proc.poll() is not None or self.readyz() == 200,
                   timeout=20, msg="node /readyz 200")
        if self.proc.poll() is not None:
            raise RuntimeError(f"node exited {self.proc.returncode}:\n{tail(self.logfile)}")
        return self

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=15)
        if self in STARTED:
            STARTED.remove(self)


class Topology:
    """One Redis (masters = [its port]) or a cluster: .url for the node,
    .masters (ports), .cpu() = {port: used_cpu_sys + used_cpu_user}."""

    def __init__(self, kind, tmpdir, replicas=0, node_timeout_ms=2000):
        self.kind = kind
        self.tmp = Path(tmpdir)
        if kind == "single":
            self.srv = pgtest.RedisServer(self.tmp / "redis")
        else:
            self.srv = RedisCluster(self.tmp / "cluster", masters=3, replicas=replicas,
                                    node_timeout_ms=node_timeout_ms)

    def start(self):
        STARTED.append(self)
        self.srv.start()
        if self.kind == "single":
            self.masters = [self.srv.port]
            self.url = f"redis://127.0.0.1:{self.srv.port}/0"
        else:
            self.masters = self.srv.masters()
            self.url = "redis+cluster://" + ",".join(n.addr for n in self.srv.nodes)
        self.clients = {p: redis_py.Redis(host="127.0.0.1", port=p, decode_responses=True,
                                          socket_timeout=5) for p in self.masters}
        return self

    def cpu(self):
        out = {}
        for p, c in self.clients.items():
            i = c.info("cpu")
            out[p] = float(i["used_cpu_sys"]) + float(i["used_cpu_user"])
        return out

    def stop(self):
        for c in getattr(self, "clients", {}).values():
            c.close()
        self.srv.stop()
        if self in STARTED:
            STARTED.remove(self)


def stop_all():
    for s in reversed(list(STARTED)):
        try:
            s.stop()
        except Exception as e:  # noqa: BLE001 - keep stopping the others
            say(f"stop {s}: {e}")


# --------------------------------------------------------------------------
# Throughput and Redis CPU


def run_bench(a, label, topo, node, bench_args):
    """pushgate-bench on CPU 1 against node; Redis CPU of each master read at
    the bench's publish start and after its drain. Returns the JSON line."""
    cmd = ["taskset", "-c", "1", a.bench, "--label", label, "--host", "127.0.0.1",
           "--port", str(node.port), "--server-pid", str(node.pid),
           "--redis-url", f"redis://127.0.0.1:{topo.masters[0]}"] + bench_args
    say(label + ": " + " ".join(cmd[3:]))
    la0 = loadavg()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    cpu0 = cpu1 = None
    t0 = t1 = None
    for line in p.stderr:
        if not a.quiet:
            sys.stderr.write("   " + line)
        if cpu0 is None and "publishing " in line and " messages (" in line:
            cpu0, t0 = topo.cpu(), time.monotonic()
        elif cpu0 is not None and cpu1 is None and "collecting results" in line:
            cpu1, t1 = topo.cpu(), time.monotonic()
    out = p.stdout.read()
    rc = p.wait()
    if cpu0 is not None and cpu1 is None:
        cpu1, t1 = topo.cpu(), time.monotonic()
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"{label}: pushgate-bench printed no result (exit {rc})")
    res["bench_exit"] = rc
    res["topology"] = topo.kind
    res["loadavg_before"], res["loadavg_after"] = la0, loadavg()
    if cpu0 is not None:
        deliv = res["deliveries"]["received"] if "deliveries" in res else None
        deliv = deliv or res.get("received") or find(res, "received")
        per = {str(p): round(cpu1[p] - cpu0[p], 3) for p in cpu0}
        total = sum(cpu1[p] - cpu0[p] for p in cpu0)
        res["redis"] = {
            "window_s": round(t1 - t0, 3),
            "cpu_s": round(total, 3),
            "cpu_s_per_master": per,
            "cpu_us_per_delivery": round(total * 1e6 / deliv, 2) if deliv else None,
            "cpu_us_per_delivery_per_master":
                {k: round(v * 1e6 / deliv, 2) for k, v in per.items()} if deliv else None,
        }
    return res


def find(obj, key):
    """The first value of key anywhere in nested dicts (the bench's JSON)."""
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], dict):
            return obj[key]
        for v in obj.values():
            r = find(v, key)
            if r is not None:
                return r
    return None


def idle_cpu(topo, secs=5.0):
    """Redis CPU per second per master with the node connected and nothing
    published (serverCron, and in a cluster its bus gossip): ms/s."""
    c0, t0 = topo.cpu(), time.monotonic()
    time.sleep(secs)   # the measurement window itself
    c1, t1 = topo.cpu(), time.monotonic()
    return {str(p): round((c1[p] - c0[p]) * 1e3 / (t1 - t0), 3) for p in c0}


def with_node(a, kind, fn):
    tmp = Path(tempfile.mkdtemp(prefix=f"clbench-{kind}-", dir=a.tmp))
    topo = Topology(kind, tmp).start()
    try:
        node = Node(a.gateway, tmp / "node", topo.url).start()
        try:
            res = fn(topo, node)
            # after the run, with the clients gone: a cluster just created
            # is still gossiping its new configuration for a while
            idle = idle_cpu(topo)
            rd = res.get("redis")
            if rd:
                # the same window's idle share taken out: what the messages cost
                rd["idle_cpu_ms_per_s_per_master"] = idle
                net = {k: v - idle[k] * rd["window_s"] / 1e3
                       for k, v in rd["cpu_s_per_master"].items()}
                deliv = find(res.get("deliveries", {}), "received")
                if deliv:
                    rd["net_cpu_us_per_delivery"] = round(sum(net.values()) * 1e6 / deliv, 2)
                    rd["net_cpu_us_per_delivery_per_master"] = {
                        k: round(v * 1e6 / deliv, 2) for k, v in net.items()}
            with open(a.out, "a") as f:
                f.write(json.dumps(res) + "\n")
            return res
        finally:
            node.stop()
    finally:
        topo.stop()


def set_users(a, rows):
    for kind in ("single", "cluster"):
        for rate in a.rates:
            def go(topo, node, rate=rate):
                return run_bench(a, f"users-{kind}-10k-api-{rate}", topo, node, [
                    "--transport", "ws", "--path", "/ws", "-c", "10000", "--users", "10000",
                    "--jwt-secret", SECRET, "--channel", "user-random", "--publish", "api",
                    "--api-key", APIKEY, "--rate", str(rate), "--duration", str(a.duration),
                    "--timeout", str(a.duration + 90)])
            rows.append(with_node(a, kind, go))


def set_max(a, rows):
    for kind in ("single", "cluster"):
        def go(topo, node):
            return run_bench(a, f"max-{kind}-10k-api", topo, node, [
                "--transport", "ws", "--path", "/ws", "-c", "10000", "--users", "10000",
                "--jwt-secret", SECRET, "--channel", "user-random", "--publish", "api",
                "--api-key", APIKEY, "--rate", "0", "--messages", str(a.max_messages),
                "--publish-conns", str(a.publish_conns), "--timeout", "150"])
        rows.append(with_node(a, kind, go))


def set_broadcast(a, rows):
    for kind in ("single", "cluster"):
        def go(topo, node):
            return run_bench(a, f"broadcast-{kind}-1k-api-1000", topo, node, [
                "--transport", "ws", "--path", "/ws", "-c", "1000", "--publish", "api",
                "--api-key", APIKEY, "--rate", "1000", "--duration", str(a.duration),
                "--timeout", str(a.duration + 90)])
        rows.append(with_node(a, kind, go))


# --------------------------------------------------------------------------
# Master kill


class KillPublisher(threading.Thread):
    """The one-key FCALL pushgate_publish on one channel every every_s to the
    master owning it, following MOVED and asking a live node for the slot map
    after an error. acked: [(id, seq, monotonic time of the answer)]."""

    def __init__(self, cl, name, every_s, victim_port):
        super().__init__(daemon=True)
        self.cl, self.name, self.every = cl, name, every_s
        self.key = f"{PREFIX}{{{name}}}:history"
        self.slot = key_slot(self.key)
        self.victim = victim_port
        self.stop_ev = threading.Event()
        self.acked = []
        self.sent = []        # (seq, monotonic time sent)
        self.errors = []      # (monotonic time, text)
        self.port = victim_port
        self.conns = {}

    def client(self, port):
        c = self.conns.get(port)
        if c is None:
            c = self.conns[port] = redis_py.Redis(host="127.0.0.1", port=port,
                                                  decode_responses=True, socket_timeout=1,
                                                  socket_connect_timeout=1)
        return c

    def owner(self):
        for n in self.cl.nodes:
            if not n.alive():
                continue
            try:
                for lo, hi, master, *_ in self.client(n.port).execute_command("CLUSTER", "SLOTS"):
                    if int(lo) <= self.slot <= int(hi):
                        return int(master[1])
            except redis_py.RedisError:
                continue
        return self.port

    def run(self):
        seq = 0
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            seq += 1
            t = time.monotonic()
            self.sent.append((seq, t))
            try:
                r = self.client(self.port).execute_command(
                    "FCALL", "pushgate_publish", 1, self.key, self.name,
                    json.dumps({"data": {"seq": seq}}))
                self.acked.append((int(r), seq, time.monotonic()))
            except redis_py.ResponseError as e:
                self.errors.append((time.monotonic(), str(e)[:80]))
                w = str(e).split()
                if len(w) == 3 and w[0] == "MOVED":
                    self.port = int(w[2].rsplit(":", 1)[1])
                else:
                    self.port = self.owner()
            except redis_py.RedisError as e:
                self.errors.append((time.monotonic(), type(e).__name__))
                self.conns.pop(self.port, None)
                self.port = self.owner()
            nxt += self.every
            time.sleep(max(0.0, nxt - time.monotonic()))


def kill_run(a, timeout_ms, run_no):
    tmp = Path(tempfile.mkdtemp(prefix=f"clbench-kill{timeout_ms}-", dir=a.tmp))
    topo = Topology("cluster", tmp, replicas=1, node_timeout_ms=timeout_ms).start()
    try:
        cl = topo.srv
        victim = cl.masters()[0]
        name = cl.channels_on_shards(1, stem="kill")[victim][0]
        # its CPU is not measured here: a debug log tells the recovery's steps
        node = Node(a.gateway, tmp / "node", topo.url, log_level="debug",
                    extra=["--history-size", str(a.history_size)]).start()
        try:
            return asyncio.run(asyncio.wait_for(
                kill_measure(a, cl, node, victim, name, timeout_ms, run_no), 120))
        finally:
            node.stop()
    finally:
        topo.stop()


async def kill_measure(a, cl, node, victim, name, timeout_ms, run_no):
    stop = threading.Event()   # ends the publisher and the /readyz poller, even on failure
    try:
        return await _kill_measure(a, cl, node, victim, name, timeout_ms, run_no, stop)
    finally:
        stop.set()


async def _kill_measure(a, cl, node, victim, name, timeout_ms, run_no, stop):
    got = []   # (id, seq, monotonic time received)
    ws = await websockets.connect(f"ws://127.0.0.1:{node.port}/ws?channels={name}",
                                  max_size=None)

    async def reader():
        async for raw in ws:
            m = json.loads(raw)
            if m.get("channel") == name and "id" in m:
                got.append((int(m["id"]), m.get("data", {}).get("seq"), time.monotonic()))
    rtask = asyncio.create_task(reader())
    # the node loads the function library on a master only when it first
    # routes a call there (tests/deploy/test_compose_cluster.py's strict
    # xfail): one API publish on the channel first, so the FCALLs find it
    r = pgtest.api_publish(node.port, {"channel": name, "data": {"seq": 0}}, api_key=APIKEY)
    if r.status != 200:
        raise RuntimeError(f"priming API publish: {r}")
    pub = KillPublisher(cl, name, a.every_ms / 1000.0, victim)
    pub.stop_ev = stop
    pub.start()
    await wait_async(lambda: len(got) >= 50, 15, "deliveries before the kill")
    ready_log = []   # (monotonic, status)

    def poll_ready():
        last = None
        while not stop.is_set():
            s = node.readyz()
            if s != last:
                ready_log.append((time.monotonic(), s))
                last = s
            time.sleep(0.02)
    poller = threading.Thread(target=poll_ready, daemon=True)
    poller.start()
    await asyncio.sleep(0.5)   # the offered load before the kill, not a wait for a state
    la = loadavg()
    t_kill, wall_kill = time.monotonic(), time.time()
    os.kill(cl.node_by_port(victim).proc.pid, signal.SIGKILL)
    cl.node_by_port(victim).proc.wait(timeout=10)
    # the first delivery of a message published after the kill
    seq_at_kill = max((s for s, t in pub.sent if t <= t_kill), default=0)
    await wait_async(lambda: any(s is not None and s > seq_at_kill for _, s, _ in got),
                     60, "a delivery after the kill")
    await asyncio.sleep(2.0)   # two more seconds of load after the recovery
    stop.set()   # the publisher and the /readyz poller (ready again by now)
    await asyncio.get_running_loop().run_in_executor(None, pub.join, 5)
    # every acknowledged id has had time to arrive (or to be lost for good)
    acked_ids = {i for i, _, _ in pub.acked}
    try:
        await wait_async(lambda: acked_ids <= {i for i, _, _ in got}, 5, "all acked delivered")
    except AssertionError:
        pass
    poller.join(2)
    rtask.cancel()
    await ws.close()

    first_after = min(t for _, s, t in got if s is not None and s > seq_at_kill)
    first_ack_after = min((t for _, s, t in pub.acked if s > seq_at_kill), default=None)
    got_ids = {i for i, _, _ in got}
    lost = sorted(i for i in acked_ids if i not in got_ids)
    acked_before_kill = [(i, s) for i, s, t in pub.acked if t <= t_kill]
    notready = [t for t, s in ready_log if t >= t_kill and s != 200]
    ready_again = None
    if notready:
        ready_again = next((t for t, s in ready_log if t > notready[0] and s == 200), None)
    seqs = [s for _, s, _ in got if s is not None]
    res = {
        "label": f"kill-{timeout_ms}ms-run{run_no}",
        "node_timeout_ms": timeout_ms,
        "history_size": a.history_size,
        "every_ms": a.every_ms,
        "kill_to_first_delivery_s": round(first_after - t_kill, 3),
        "kill_to_first_accepted_publish_s":
            round(first_ack_after - t_kill, 3) if first_ack_after else None,
        "readyz_went_503": bool(notready),
        "kill_to_readyz_503_s": round(notready[0] - t_kill, 3) if notready else None,
        "kill_to_readyz_200_s": round(ready_again - t_kill, 3) if ready_again else None,
        "published_acked": len(pub.acked),
        "acked_before_kill": len(acked_before_kill),
        "publish_errors": len(pub.errors),
        "error_kinds": sorted({e for _, e in pub.errors}),
        "acked_lost": len(lost),
        "acked_lost_ids": lost[:20],
        # when each lost publish was answered, relative to the kill (s)
        "acked_lost_at_s": [round(t - t_kill, 3) for i, _, t in pub.acked if i in set(lost)][:20],
        "first_accepted_after_kill_id": next((i for i, s, _ in pub.acked if s > seq_at_kill), None),
        "delivered": len(got),
        "duplicates": len(got) - len({i for i, _, _ in got}),
        "out_of_order": sum(1 for x, y in zip(seqs, seqs[1:]) if y < x),
        "loadavg_at_kill": la,
        "kill_utc": time.strftime("%H:%M:%S", time.gmtime(wall_kill)) + f".{int(wall_kill * 1000) % 1000:03d}",
        "node_log": str(node.logfile),
    }
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")
    say(json.dumps(res))
    return res


async def wait_async(pred, timeout, msg):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {msg} within {timeout}s")
        await asyncio.sleep(0.005)


def set_kill(a, rows):
    for ms in a.node_timeout:
        for r in range(1, a.kill_runs + 1):
            rows.append(kill_run(a, ms, r))


# --------------------------------------------------------------------------
# Report


def table(rows):
    lines = ["| run | topology | offered msg/s | achieved msg/s | delivered | lost | p50 / p99 ms"
             " | node CPU µs/msg | node ran / waited for a CPU, s | Redis CPU µs/msg (per master)"
             " | the same net of idle | load avg |", "|---" * 12 + "|"]
    klines = ["| node timeout, history | kill → first delivery s | kill → first accepted publish s"
              " | kill → /readyz 200 s | acked lost | publish errors | load avg |",
              "|---" * 7 + "|"]
    for r in rows:
        if r.get("label", "").startswith("kill-"):
            klines.append(f"| {r['node_timeout_ms']} ms, {r['history_size']} | {r['kill_to_first_delivery_s']} | "
                          f"{r['kill_to_first_accepted_publish_s']} | {r['kill_to_readyz_200_s']}"
                          f" | {r['acked_lost']} of {r['published_acked']} | "
                          f"{r['publish_errors']} | {r['loadavg_at_kill'][0]} |")
            continue
        rd = r.get("redis", {})
        per = rd.get("net_cpu_us_per_delivery_per_master") or {}
        raw = rd.get("cpu_us_per_delivery_per_master") or {}
        srv = r.get("server", {})
        pub = r.get("publish", {})
        lat = r.get("latency_ms", {}) or {}
        lines.append(
            f"| {r['label']} | {r['topology']} | {r['params']['rate']} | {pub.get('per_s')} | "
            f"{find(r.get('deliveries', {}), 'received')} | {find(r.get('deliveries', {}), 'lost')} | "
            f"{lat.get('p50')} / {lat.get('p99')} | {srv.get('cpu_us_per_message')} | "
            f"{srv.get('sched_cpu_s')} / {srv.get('sched_wait_s')} | "
            f"{rd.get('cpu_us_per_delivery')} ({' / '.join(str(v) for v in raw.values())}) | "
            f"{rd.get('net_cpu_us_per_delivery')} ({' / '.join(str(v) for v in per.values())}) | "
            f"{r['loadavg_before'][0]} |")
    print("\n".join(lines))
    print()
    print("\n".join(klines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("sets", nargs="*", default=["users", "broadcast", "max", "kill"])
    ap.add_argument("--gateway", default=str(ROOT / "build" / "gateway" / "pushgate"))
    ap.add_argument("--bench", default=str(ROOT / "build" / "tools" / "bench" / "pushgate-bench"))
    ap.add_argument("--out", default="cluster-bench-results.jsonl")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--rates", type=int, nargs="+", default=[1000, 3000])
    ap.add_argument("--max-messages", type=int, default=60000)
    ap.add_argument("--publish-conns", type=int, default=32,
                    help="max: HTTP keep-alive connections publishing, one request in flight each")
    ap.add_argument("--node-timeout", type=int, nargs="+", default=[2000])
    ap.add_argument("--kill-runs", type=int, default=5)
    ap.add_argument("--every-ms", type=float, default=10.0)
    ap.add_argument("--history-size", type=int, default=5000,
                    help="kill: the node's --history-size; the replay after the failover "
                    "reaches back this many messages per channel")
    ap.add_argument("--tmp", default=None, help="parent of the temp dirs (default /tmp)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args()
    for exe in (a.gateway, a.bench):
        if not os.access(exe, os.X_OK):
            sys.exit(f"cluster-bench: {exe} not found (build with -DPG_BUILD_BENCH=ON, "
                     "or pass --gateway / --bench)")
    # each connection is a descriptor in the node and in the bench
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    rows = []
    sets = {"users": set_users, "max": set_max, "broadcast": set_broadcast, "kill": set_kill}
    try:
        for s in a.sets:
            if s not in sets:
                sys.exit(f"cluster-bench: unknown set {s} (one of {', '.join(sets)})")
            sets[s](a, rows)
    finally:
        stop_all()
        if rows:
            table(rows)


if __name__ == "__main__":
    main()
