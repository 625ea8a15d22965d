"""sentinelkit - Redis Sentinel topologies for the integration tests (SPEC §10).

Built on pgtest; pgtest, pgfixtures and conftest are not changed.

- RedisNode: a redis-server on a free loopback port with extra arguments
  (replicaof, ACL users), stopped by PID; kill9() and restart() on its port.
- Sentinel: `redis-server <conf> --sentinel` (Debian ships no separate
  redis-sentinel binary in redis-server), stopped by PID.
- Topology: one master, N replicas, M sentinels with small timeouts, ready
  when every sentinel knows every replica and every other sentinel.
- `sentinel_topology` fixture: make(replicas=1, sentinels=3, ...) -> Topology,
  everything stopped by PID at teardown.
- SwitchWatcher: a thread SUBSCRIBEd to +switch-master at one sentinel that
  records when each announcement arrived (time.monotonic()).
"""

import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis as redis_py

import pgtest
from pgtest import wait_until

MASTER_NAME = "pgmaster"

# The README's ACL rule ("Redis topologies"), with the default prefix: the
# rights a pushgate user needs. test_acl checks the README against it.
ACL_RULE = ("on >PASSWORD resetkeys ~pushgate:* resetchannels &* -@all "
            "+select +role +ping +time +subscribe +unsubscribe +psubscribe +punsubscribe "
            "+publish +fcall +fcall_ro +function|load +hgetall +xadd "
            "+exists +expire +get +set +hdel +hkeys +hset +sadd +scard +spop +srem "
            "+xinfo +xlen +xrange +xsetid +zadd +zrangebyscore +zrem +zscore")


def acl_setuser(client, user, password):
    """Create (or reset) user with exactly the README's rights. ACL changes
    are not replicated: call it on every node of a topology."""
    client.execute_command("ACL", "SETUSER", user, "reset",
                           *ACL_RULE.replace(">PASSWORD", f">{password}").split())


class RedisNode(pgtest.RedisProcess):
    """A redis-server for a topology: like pgtest.RedisServer (no
    persistence, own dir, logfile, stopped by PID) plus extra arguments."""

    def __init__(self, tmpdir, name, args=()):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.args = list(args)
        self.port = None
        self.proc = None
        self.logfile = self.dir / f"{name}.log"
        self.password = None   # for clients, when the node requires one

    def start(self, port=None):
        self.port = port or self.port or pgtest.free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", str(self.logfile), "--daemonize", "no",
             "--protected-mode", "no",
             # a replica syncs at once, not after the default 5 s wait for others
             "--repl-diskless-sync-delay", "0"] + self.args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=str(self.dir))
        wait_until(self._ping_or_dead, timeout=10, msg=f"{self.name} PING")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} did not start:\n{pgtest.tail(self.logfile)}")
        return self

    def client(self, decode=True):
        return redis_py.Redis(host="127.0.0.1", port=self.port, password=self.password,
                              decode_responses=decode, socket_timeout=5)

    def role(self):
        return self.client().execute_command("ROLE")[0]


class Sentinel(pgtest.RedisProcess):
    """One sentinel watching MASTER_NAME on its own config file."""

    # down-after 2 s, not 1: on a loaded CI machine a just-promoted master
    # (replicas full-syncing from it) once missed its PINGs for a second,
    # the Sentinels failed it over too, and the writes it had acknowledged
    # went with it when it turned replica. That is Sentinel's documented
    # limit (asynchronous replication), not the node's to prevent; the tests
    # are about the node following one failover.
    def __init__(self, tmpdir, name, master_port, quorum=2, down_after_ms=2000,
                 failover_timeout_ms=4000, requirepass=None, auth_user=None, auth_pass=None):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = pgtest.free_port()
        self.proc = None
        self.logfile = self.dir / f"{name}.log"
        self.conf = self.dir / f"{name}.conf"
        self.requirepass = requirepass
        lines = [
            f"port {self.port}", "bind 127.0.0.1", "daemonize no",
            f"logfile {self.logfile}", f"dir {self.dir}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if requirepass:
            # sentinels that require a password talk to each other with it
            lines += [f"requirepass {requirepass}", f"sentinel sentinel-pass {requirepass}"]
        if auth_user:
            lines.append(f"sentinel auth-user {MASTER_NAME} {auth_user}")
        if auth_pass:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {auth_pass}")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", str(self.conf), "--sentinel"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=str(self.dir))
        wait_until(self._ping_or_dead, timeout=10, msg=f"{self.name} PING")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} did not start:\n{pgtest.tail(self.logfile)}")
        return self

    def client(self):
        return redis_py.Redis(host="127.0.0.1", port=self.port, password=self.requirepass,
                              decode_responses=True, socket_timeout=5)

    def master_addr(self):
        return tuple(self.client().execute_command(
            "SENTINEL", "get-master-addr-by-name", MASTER_NAME) or ())



class Topology:
    """One master, `replicas` replicas and `sentinels` sentinels on loopback."""

    def __init__(self, tmpdir, replicas=1, sentinels=3, node_args=(), masterauth=None,
                 sentinel_kw=None):
        self.dir = Path(tmpdir)
        self.procs = []
        self.nodes = [RedisNode(self.dir / "n0", "redis-n0", node_args)]
        self.node_args = list(node_args)
        self.masterauth = masterauth
        self.nreplicas = replicas
        self.nsentinels = sentinels
        self.sentinel_kw = dict(sentinel_kw or {})
        self.sentinels = []

    def start(self):
        master = self.nodes[0]
        self._track(master).start()
        extra = ["--masterauth", self.masterauth] if self.masterauth else []
        for i in range(1, self.nreplicas + 1):
            n = RedisNode(self.dir / f"n{i}", f"redis-n{i}", self.node_args + extra +
                          ["--replicaof", "127.0.0.1", str(master.port)])
            n.password = master.password
            self.nodes.append(n)
            self._track(n).start()
        for n in self.nodes[1:]:
            wait_until(lambda n=n: n.client().info("replication").get(
                       "master_link_status") == "up",
                       timeout=10, msg=f"{n.name} in sync")
        for i in range(self.nsentinels):
            s = Sentinel(self.dir / f"s{i}", f"sentinel-{i}", master.port, **self.sentinel_kw)
            self.sentinels.append(s)
            self._track(s).start()
        self.wait_settled()
        return self

    def _track(self, p):
        self.procs.append(p)
        pgtest.ACTIVE.append(p)
        return p

    def wait_settled(self, timeout=20):
        """Every live sentinel agrees on the master and knows every other
        live replica and sentinel: the state a failover needs."""
        live_s = [s for s in self.sentinels if s.alive()]
        live_r = [n for n in self.nodes if n.alive()]

        def settled():
            addrs = set()
            for s in live_s:
                c = s.client()
                addrs.add(s.master_addr())
                reps = [r for r in c.execute_command("SENTINEL", "replicas", MASTER_NAME)
                        if "s_down" not in _field(r, "flags")]
                sens = c.execute_command("SENTINEL", "sentinels", MASTER_NAME)
                if len(reps) < len(live_r) - 1 or len(sens) < len(live_s) - 1:
                    return False
            return len(addrs) == 1
        wait_until(settled, timeout=timeout, interval=0.1, msg="sentinels settled")

    def url(self, creds="", extra_hosts=(), query=""):
        hosts = [f"127.0.0.1:{p}" for p in extra_hosts] + \
                [f"127.0.0.1:{s.port}" for s in self.sentinels]
        return f"redis+sentinel://{creds}{','.join(hosts)}/{MASTER_NAME}" + \
               (f"?{query}" if query else "")

    def master_port(self):
        """The master's port as the sentinels report it."""
        for s in self.sentinels:
            if s.alive():
                try:
                    return int(s.master_addr()[1])
                except (redis_py.exceptions.RedisError, IndexError):
                    continue
        raise AssertionError("no sentinel answers")

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def master(self):
        return self.node(self.master_port())

    def failover(self):
        """SENTINEL FAILOVER at the first live sentinel."""
        s = next(s for s in self.sentinels if s.alive())
        s.client().execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

    def stop(self):
        for p in reversed(self.procs):
            try:
                p.stop()
            finally:
                if p in pgtest.ACTIVE:
                    pgtest.ACTIVE.remove(p)


def _field(flat, name):
    """A field of a SENTINEL replicas/sentinels entry (a flat list)."""
    if isinstance(flat, dict):
        return flat.get(name, "")
    for k, v in zip(flat[::2], flat[1::2]):
        if k == name:
            return v
    return ""


@pytest.fixture
def sentinel_topology(tmp_path):
    """make(**Topology kwargs) -> a started Topology; all stopped at teardown."""
    made = []

    def make(**kw):
        t = Topology(tmp_path / f"topo{len(made)}", **kw)
        made.append(t)
        return t.start()

    try:
        yield make
    finally:
        for t in made:
            t.stop()


class SwitchWatcher(threading.Thread):
    """Records (time.monotonic(), new_port) for every +switch-master that a
    sentinel announces. stop() ends it."""

    def __init__(self, sentinel):
        super().__init__(daemon=True)
        self.client = sentinel.client()
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe("+switch-master")
        self.switches = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                m = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            except (redis_py.exceptions.RedisError, OSError):
                return
            if m and m["type"] == "message":
                parts = m["data"].split()
                if parts[0] == MASTER_NAME:
                    self.switches.append((time.monotonic(), int(parts[4])))

    def wait_switch(self, count=1, timeout=30):
        wait_until(lambda: len(self.switches) >= count, timeout=timeout, interval=0.02,
                   msg=f"+switch-master #{count}")
        return self.switches[count - 1]

    def stop(self):
        self.halt.set()
        self.join(timeout=5)
        self.pubsub.close()
        self.client.close()
