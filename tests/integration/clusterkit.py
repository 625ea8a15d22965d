"""clusterkit - a real Redis Cluster for the integration tests (SPEC §10).

Masters (and optionally one replica each) are redis-server processes with
--cluster-enabled yes on free loopback ports picked at run time, joined with
`redis-cli --cluster create ... --cluster-yes`, and stopped by PID. Each node
gets its cluster bus on a second free port (--cluster-port, Redis 7), since
port + 10000 may be taken or past 65535.

Also here: the key-slot function of Redis Cluster (CRC16/XMODEM of the hash
tag) to choose channels on given shards, a raw sharded-pub/sub subscriber
(redis-py 4.3 has no SSUBSCRIBE), and the function library rendered for
cluster mode.
"""

import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import redis as redis_py

import pgtest
from pgtest import free_port, render_functions, stop_process, tail, wait_until

PREFIX = pgtest.DEFAULT_PREFIX
NSLOTS = 16384


# --------------------------------------------------------------------------
# Key slots, as Redis Cluster computes them


def crc16(data):
    """CRC16/XMODEM (poly 0x1021, init 0), the checksum Redis Cluster uses."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key):
    """The hash slot of key: only the part inside the first {...} counts,
    when that part is not empty."""
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc16(key) % NSLOTS


def channel_in_slot(slot, stem, prefix=PREFIX):
    """A channel name C whose pub/sub channel <prefix>{C} (and so all of C's
    keys) hashes to slot: about 16384 tries."""
    i = 0
    while key_slot(f"{prefix}{{{stem}{i}}}") != slot:
        i += 1
    return f"{stem}{i}"


def render_cluster_functions(prefix=PREFIX, **kw):
    """gateway/functions.lua rendered for a redis+cluster:// node: the usual
    placeholders plus @TOPOLOGY@ = cluster."""
    return render_functions(prefix, **kw).replace("@TOPOLOGY@", "cluster")


# --------------------------------------------------------------------------
# One cluster node


class ClusterNode(pgtest.RedisProcess):
    """A redis-server with cluster support on 127.0.0.1, no persistence,
    its own directory. Has .port and .logfile, so pgfixtures' report hook
    attaches its log to a failing test."""

    def __init__(self, tmpdir, idx, acl=None, app_user=None):
        self.acl = acl  # (user, password): an all-powerful user; default is off
        self.app_user = app_user  # (user, password, [rule words]) or None
        self.dir = Path(tmpdir) / f"node{idx}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.idx = idx
        self.port = None
        self.bus_port = None
        self.proc = None
        self.logfile = self.dir / "redis.log"
        self.name = f"cluster-node{idx}"

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self, node_timeout_ms):
        for _ in range(5):
            self.port, self.bus_port = free_port(), free_port()
            if self.port == self.bus_port:
                continue
            # a fresh nodes.conf every start: a node never rejoins by itself
            conf = self.dir / "nodes.conf"
            if conf.exists():
                conf.unlink()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-port", str(self.bus_port),
                 "--cluster-config-file", str(conf),
                 "--cluster-node-timeout", str(node_timeout_ms),
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                 "--logfile", str(self.logfile), "--daemonize", "no",
                 "--protected-mode", "no"] + self._acl_args(),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, cwd=str(self.dir))
            wait_until(self._ping_or_dead, timeout=10, msg=f"{self.name} PING")
            if self.proc.poll() is None:
                return self
            # most likely a port was taken between free_port() and bind
        raise RuntimeError(f"{self.name} did not start:\n{tail(self.logfile)}")

    def _acl_args(self):
        if self.acl is None:
            return []
        user, password = self.acl
        # redis-server takes a directive's words as separate arguments
        args = ["--user", user, "on", f">{password}", "~*", "&*", "+@all",
                "--user", "default", "off"]
        if self.app_user:
            name, pw, rule = self.app_user
            args += ["--user", name, "reset"] + [w.replace(">PASSWORD", f">{pw}") for w in rule]
        return args

    def client(self, decode=True):
        user, password = self.acl or (None, None)
        return redis_py.Redis(host="127.0.0.1", port=self.port, username=user,
                              password=password, decode_responses=decode, socket_timeout=5)



# --------------------------------------------------------------------------
# The cluster


class RedisCluster:
    """masters x (1 + replicas) cluster nodes joined by redis-cli. start()
    returns once every node reports cluster_state:ok and agrees on who owns
    every slot; stop() stops every node by PID."""

    def __init__(self, tmpdir=None, masters=3, replicas=0, node_timeout_ms=2000, acl=None,
                 app_user=None):
        """acl = (user, password): every node has that ACL user, allowed
        everything, for the cluster's own set-up and the tests' clients, and
        the default user is off, as a production cluster with ACLs would;
        app_user = (user, password, rule words) adds the user a gateway
        would run as. No replicas with ACLs (they would need masteruser)."""
        self.dir = Path(tmpdir or tempfile.mkdtemp(prefix="pg-cluster-"))
        self.nmasters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.acl = acl
        self.nodes = [ClusterNode(self.dir, i, acl, app_user)
                      for i in range(masters * (1 + replicas))]
        self._clients = {}

    def start(self):
        for n in self.nodes:
            pgtest.ACTIVE.append(n)
            n.start(self.node_timeout_ms)
        cmd = ["redis-cli", "--cluster", "create", *[n.addr for n in self.nodes],
               "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        if self.acl:
            cmd += ["--user", self.acl[0], "--pass", self.acl[1], "--no-auth-warning"]
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{res.stdout}\n{res.stderr}")
        self.wait_consistent(timeout=30)
        if self.replicas:
            wait_until(lambda: all(self._replicas_linked()), timeout=30,
                       msg="every replica linked to its master")
        return self

    def stop(self):
        for c in self._clients.values():
            c.close()
        self._clients.clear()
        for n in self.nodes:
            n.stop()
            if n in pgtest.ACTIVE:
                pgtest.ACTIVE.remove(n)

    # -- views of the topology ------------------------------------------------

    def node_by_port(self, port):
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def client(self, port):
        """A cached redis-py client (str replies) on the node at port."""
        c = self._clients.get(port)
        if c is None:
            user, password = self.acl or (None, None)
            c = self._clients[port] = redis_py.Redis(
                host="127.0.0.1", port=port, username=user, password=password,
                decode_responses=True, socket_timeout=5)
        return c

    def slot_map(self, port=None):
        """{slot range (lo, hi): master port} as the node at port (default:
        the first live node) sees it, from CLUSTER SLOTS."""
        port = port or next(n.port for n in self.nodes if n.alive())
        out = {}
        for lo, hi, master, *_ in self.client(port).execute_command("CLUSTER", "SLOTS"):
            out[(int(lo), int(hi))] = int(master[1])
        return out

    def owner_port(self, slot, port=None):
        for (lo, hi), p in self.slot_map(port).items():
            if lo <= slot <= hi:
                return p
        raise KeyError(f"slot {slot} has no owner")

    def masters(self):
        """Ports of the masters that own slots, in slot order."""
        seen = []
        for (_lo, _hi), p in sorted(self.slot_map().items()):
            if p not in seen:
                seen.append(p)
        return seen

    def owner_of_key(self, key):
        """The redis-py client of the master owning key's slot."""
        return self.client(self.owner_port(key_slot(key)))

    def wait_consistent(self, timeout=30):
        """Until every live node says cluster_state:ok and all of them map
        every slot to the same master."""
        def ok():
            views = []
            for n in self.nodes:
                if not n.alive():
                    continue
                info = self.client(n.port).execute_command("CLUSTER", "INFO")
                if isinstance(info, bytes):
                    info = info.decode()
                if "cluster_state:ok" not in info:
                    return False
                views.append(sorted(self.slot_map(n.port).items()))
            return all(v == views[0] for v in views)
        wait_until(ok, timeout=timeout, interval=0.05, msg="cluster consistent")

    def _replicas_linked(self):
        for n in self.nodes:
            info = self.client(n.port).info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                yield False
            else:
                yield True

    def channels_on_shards(self, count_per_shard=1, stem="ch", prefix=PREFIX):
        """{master port: [channel, ...]}: channel names whose {C} slot lives
        on each master, count_per_shard of them each."""
        smap = sorted(self.slot_map().items())
        want = {p: [] for p in self.masters()}
        i = 0
        while any(len(v) < count_per_shard for v in want.values()):
            ch = f"{stem}{i}"
            i += 1
            slot = key_slot(f"{prefix}{{{ch}}}")
            for (lo, hi), p in smap:
                if lo <= slot <= hi and len(want[p]) < count_per_shard:
                    want[p].append(ch)
        return want

    def node_id(self, port):
        return self.client(port).execute_command("CLUSTER", "MYID")

    def move_slot(self, slot, dst_port):
        """Move one slot and its keys to the master at dst_port, the way
        redis-cli --cluster reshard does it (IMPORTING / MIGRATING, MIGRATE
        the keys, SETSLOT NODE on both ends), then wait until every node
        agrees. The old owner pushes sunsubscribe to the slot's shard
        subscribers when it learns the slot is gone."""
        src_port = self.owner_port(slot)
        if src_port == dst_port:
            return
        src, dst = self.client(src_port), self.client(dst_port)
        src_id, dst_id = self.node_id(src_port), self.node_id(dst_port)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", dst_port, "", 0, 5000, "KEYS", *keys)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self.wait_consistent()

    def reshard_lowest_slot(self, src_port, dst_port):
        """redis-cli --cluster reshard of one slot from src to dst, as an
        operator runs it; redis-cli moves the source's lowest slot first.
        Returns that slot once every node agrees."""
        lo = min(lo for (lo, _hi), p in self.slot_map().items() if p == src_port)
        cmd = ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{src_port}",
               "--cluster-from", self.node_id(src_port), "--cluster-to", self.node_id(dst_port),
               "--cluster-slots", "1", "--cluster-yes"]
        if self.acl:
            cmd += ["--user", self.acl[0], "--pass", self.acl[1], "--no-auth-warning"]
        res = sh(*cmd)
        if res.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster reshard failed:\n{res.stdout}\n{res.stderr}")
        self.wait_consistent()
        return lo

    def load_functions(self, prefix=PREFIX, **kw):
        """FUNCTION LOAD REPLACE the cluster-mode library on every master
        (replicas get it by replication), as a node in cluster mode will."""
        lib = render_cluster_functions(prefix, **kw)
        for p in self.masters():
            self.client(p).execute_command("FUNCTION", "LOAD", "REPLACE", lib)


# --------------------------------------------------------------------------
# Sharded pub/sub, raw


class ShardSubscriber:
    """A raw connection to one node for SSUBSCRIBE / SUNSUBSCRIBE, reading
    the pushes (ssubscribe, smessage, sunsubscribe) as lists of str."""

    def __init__(self, port):
        self.port = port
        self.conn = redis_py.Connection(host="127.0.0.1", port=port,
                                        decode_responses=True, socket_timeout=5)
        self.conn.connect()

    def ssubscribe(self, *channels):
        """SSUBSCRIBE each channel and return the confirmations, in order.
        One command per channel, pipelined: channels of one SSUBSCRIBE must
        share a slot (else CROSSSLOT), not just a shard."""
        for ch in channels:
            self.conn.send_command("SSUBSCRIBE", ch)
        return [self.read() for _ in channels]

    def sunsubscribe(self, *channels):
        for ch in channels:
            self.conn.send_command("SUNSUBSCRIBE", ch)
        return [self.read() for _ in channels]

    def read(self, timeout=5.0):
        """The next push, or AssertionError after timeout."""
        if not self.conn.can_read(timeout=timeout):
            raise AssertionError(f"no push within {timeout}s on :{self.port}")
        return self.conn.read_response()

    def poll(self, timeout=0.0):
        """The next push if one arrives within timeout, else None."""
        if self.conn.can_read(timeout=timeout):
            return self.conn.read_response()
        return None

    def close(self):
        self.conn.disconnect()


# --------------------------------------------------------------------------
# Line-driven test programs

def probe_bin(name, env_var):
    """A test program of tests/integration (pg-shard-probe, pg-cluster-probe):
    $<env_var> as CTest sets it, else beside the gateway in the same build
    tree as $PUSHGATE_BIN."""
    env = os.environ.get(env_var)
    if env:
        return env
    build = Path(pgtest.pushgate_bin()).resolve().parent.parent
    return str(build / "tests" / "integration" / name)


class LineProcess:
    """A test program that takes commands on stdin and reports on stdout, one
    a line: send() a command, expect() a report. Stopped by PID in close()."""

    def __init__(self, args, env=None):
        self.port = None
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1,
                                     env=None if env is None else {**os.environ, **env})
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, pred, timeout=5.0, what="line"):
        """The next line for which pred(line) is true; the lines skipped on
        the way are kept in self.seen."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; saw {self.seen[-20:]}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"probe exited ({self.proc.poll()}) before {what}; "
                                     f"saw {self.seen[-20:]}")
            self.seen.append(line)
            if pred(line):
                return line

    def expect_line(self, text, timeout=5.0):
        return self.expect(lambda ln: ln == text, timeout, repr(text))

    def nothing_more(self, pred, wait=0.3):
        """No line matching pred within wait seconds."""
        try:
            self.expect(pred, wait, "unexpected line")
        except AssertionError as e:
            if "no unexpected line" in str(e):
                return
            raise
        raise AssertionError(f"unexpected line: {self.seen[-1]}")

    def close(self):
        """quit, then SIGKILL by PID if it does not exit; the exit code."""
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        return stop_process(self.proc, signal.SIGKILL, timeout=5)

    def stderr(self):
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


# --------------------------------------------------------------------------
# Fixtures (import them into a test module by name)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    """Three masters, no replicas, started once per test module; the tests
    of a module use channel names of their own."""
    c = RedisCluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=0)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def sh(*args, **kw):
    """Run a command (redis-cli ...) and return its CompletedProcess."""
    kw.setdefault("timeout", 60)
    return subprocess.run(list(args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, **kw)

