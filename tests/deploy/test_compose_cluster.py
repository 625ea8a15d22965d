"""docker-compose.cluster.yml, the overlay that puts the development cluster
on a Redis Cluster (six Redis 7 nodes, three masters with a replica each,
joined once by a one-shot `redis-cli --cluster create`), as Debian's
docker-compose resolves it together with docker-compose.yml; then the
overlay's own configuration run natively: its Redis nodes' command lines
with only ports, addresses and directories changed, its create script
joining them, and a pushgate node given the overlay's environment (hosts
mapped to loopback) that must become ready and deliver what is published
with the one-key FCALL and POST /api/publish. No Docker engine is needed."""

import subprocess
import urllib.parse
from pathlib import Path

import pytest
import redis as redis_py

import deploykit
import pgtest
from clusterkit import key_slot
from pgtest import WSClient, async_wait_until, wait_until

REPO = deploykit.REPO
REDIS_NODES = ["redis", "redis2", "redis3", "redis4", "redis5", "redis6"]
CREATE = "redis-cluster-create"
NODES = ["node1", "node2", "node3"]
PREFIX = pgtest.DEFAULT_PREFIX


OVERLAY = "docker-compose.cluster.yml"


def compose(*args):
    return deploykit.compose(OVERLAY, *args)


@pytest.fixture(scope="module")
def config():
    return deploykit.compose_config(OVERLAY)


def as_run(argv):
    """A command as the container runs it: `config` prints `$$` (compose's
    escape) where the shell gets `$`."""
    return [a.replace("$$", "$") for a in argv]


def create_args(service):
    """The create service's node arguments (host:port), after sh -c SCRIPT $0."""
    cmd = service["command"]
    assert cmd[:2] == ["sh", "-c"], cmd
    return cmd[4:]


def test_overlay_is_valid_and_adds_six_cluster_nodes_and_a_one_shot_create(config):
    assert compose("config", "-q").returncode == 0
    services = config["services"]
    assert set(services) == {*REDIS_NODES, CREATE, *NODES, "nginx"}
    for n in REDIS_NODES:
        s = services[n]
        assert s["image"] == "redis:7"
        cmd = s["command"]
        assert cmd[0] == "redis-server"
        assert cmd[cmd.index("--cluster-enabled") + 1] == "yes"
        assert cmd[cmd.index("--port") + 1] == "6379"
        assert "ping" in s["healthcheck"]["test"]
    c = services[CREATE]
    script = as_run(c["command"])[2]
    assert "redis-cli --cluster create" in script
    assert "--cluster-replicas 1 --cluster-yes" in script
    assert create_args(c) == [f"{n}:6379" for n in REDIS_NODES]
    assert c["restart"] == "no"
    for n in REDIS_NODES:
        assert c["depends_on"][n]["condition"] == "service_healthy"


def test_nodes_use_the_cluster_and_start_after_the_create(config):
    services = config["services"]
    for n in NODES:
        s = services[n]
        env = s["environment"]
        url = urllib.parse.urlsplit(env["PUSHGATE_REDIS_URL"])
        assert url.scheme == "redis+cluster"
        assert url.netloc.split(",") == [f"{h}:6379" for h in REDIS_NODES]
        assert s["depends_on"][CREATE]["condition"] == "service_completed_successfully"
        for dep in REDIS_NODES:
            assert s["depends_on"][dep]["condition"] == "service_healthy"
        # the rest of the base file's node stays: id, keys, readiness check
        assert env["PUSHGATE_NODE_ID"] == n
        assert env["PUSHGATE_API_KEY"] == "dev-api-key"
        assert "/readyz" in " ".join(s["healthcheck"]["test"])


class NativeNode(pgtest.RedisProcess):
    """One of the overlay's Redis services run natively: its command line
    from the resolved config with the port moved to a free loopback one and
    a bus port, bind address and directory of its own."""

    def __init__(self, tmpdir, name, argv):
        self.name = f"compose-{name}"
        self.argv = list(argv)
        self.dir = Path(tmpdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logfile = self.dir / "redis.log"
        self.port = None
        self.proc = None

    def start(self):
        for _ in range(5):
            self.port, bus = pgtest.free_port(), pgtest.free_port()
            if self.port == bus:
                continue
            argv = list(self.argv)
            argv[argv.index("--port") + 1] = str(self.port)
            # port + 10000, the default bus port, may be taken or past 65535
            argv += ["--bind", "127.0.0.1", "--cluster-port", str(bus), "--dir", str(self.dir)]
            with open(self.logfile, "ab") as log:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, cwd=str(self.dir))
            wait_until(self._ping_or_dead, timeout=10, msg=f"{self.name} PING")
            if self.proc.poll() is None:
                return self
        raise AssertionError(f"{self.name} did not start:\n{pgtest.tail(self.logfile)}")

    def client(self, decode=True):
        return redis_py.Redis(host="127.0.0.1", port=self.port, decode_responses=decode,
                              socket_timeout=5)


def slot_owners(client):
    """[(lo, hi, master port)] from CLUSTER SLOTS, sorted."""
    return sorted((int(lo), int(hi), int(m[1]))
                  for lo, hi, m, *_ in client.execute_command("CLUSTER", "SLOTS"))


def owner_port(owners, key):
    slot = key_slot(key)
    return next(p for lo, hi, p in owners if lo <= slot <= hi)


@pytest.fixture(scope="module")
def native_cluster(config, tmp_path_factory):
    """The overlay's six Redis services run natively and joined by the
    overlay's own create script (its node arguments mapped to loopback):
    yields (nodes, {"redisN:6379": "127.0.0.1:<port>"}, the create command
    as run). Every node stopped by PID at the end of the module."""
    services = config["services"]
    tmp = tmp_path_factory.mktemp("compose-cluster")
    nodes = []
    try:
        for n in REDIS_NODES:
            node = NativeNode(tmp, n, services[n]["command"])
            nodes.append(node)
            pgtest.ACTIVE.append(node)
            node.start()
        addr = {f"{n}:6379": f"127.0.0.1:{node.port}" for n, node in zip(REDIS_NODES, nodes)}
        cmd = as_run(services[CREATE]["command"])
        cmd = cmd[:4] + [addr[a] for a in create_args(services[CREATE])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL, cwd=str(tmp))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "All 16384 slots covered" in r.stdout, r.stdout

        def consistent():
            views = set()
            for node in nodes:
                c = node.client()
                if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                    return False
                views.add(tuple(slot_owners(c)))
            return len(views) == 1
        wait_until(consistent, timeout=30, interval=0.1, msg="every node agrees on the slot map")
        yield nodes, addr, cmd
    finally:
        for node in nodes:
            node.stop()
            if node in pgtest.ACTIVE:
                pgtest.ACTIVE.remove(node)


@pytest.fixture
def compose_node(config, native_cluster, tmp_path):
    """start() -> node1 as compose configures it (its environment, Redis
    hosts mapped to the native cluster), ready; stopped by PID at teardown,
    where it must exit 0."""
    _nodes, addr, _cmd = native_cluster
    made = []

    def start():
        env = {k: str(v) for k, v in config["services"]["node1"]["environment"].items()}
        for a, mapped in addr.items():
            env["PUSHGATE_REDIS_URL"] = env["PUSHGATE_REDIS_URL"].replace(a, mapped)
        assert "redis+cluster://127.0.0.1:" in env["PUSHGATE_REDIS_URL"]
        gw = pgtest.Gateway(None, tmp_path / "gw", env=env, name=f"node1-{len(made) + 1}",
                            redis_url=env["PUSHGATE_REDIS_URL"])
        gw.api_key = env["PUSHGATE_API_KEY"]
        made.append(gw)
        return gw.start()   # waits for /readyz 200
    try:
        yield start
    finally:
        bad = pgtest.stop_gateways(made)
        assert not bad, "node(s) did not exit 0 after SIGTERM:\n" + "\n".join(bad)


def test_the_overlays_create_makes_three_masters_with_a_replica_each_once(native_cluster):
    nodes, _addr, cmd = native_cluster
    owners = slot_owners(nodes[0].client())
    assert len({p for _lo, _hi, p in owners}) == 3
    roles = [node.client().execute_command("ROLE")[0] for node in nodes]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3
    # the one-shot run again (compose up after a restart): nothing to do
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "the cluster exists already" in again.stdout
    assert slot_owners(nodes[0].client()) == owners


def channels_on_two_shards(nodes):
    """`news` (public in the base file) and a public.* channel on another
    master; {channel: the redis-py client of its owner}."""
    owners = slot_owners(nodes[0].client())
    by_port = {node.port: node for node in nodes}
    news = owner_port(owners, f"{PREFIX}{{news}}")
    other = next(f"public.{i}" for i in range(1000)
                 if owner_port(owners, f"{PREFIX}{{public.{i}}}") != news)
    return {"news": by_port[news].client(),
            other: by_port[owner_port(owners, f"{PREFIX}{{{other}}}")].client()}


def fcall_publish(owner, ch, payload):
    """The one-key form at the master owning the key, as a cluster client sends it."""
    return owner.execute_command("FCALL", "pushgate_publish", 1, f"{PREFIX}{{{ch}}}:history",
                                 ch, payload)


def test_a_node_configured_by_the_overlay_delivers_api_and_fcall_publishes(native_cluster,
                                                                          compose_node):
    nodes, _addr, _cmd = native_cluster
    gw = compose_node()
    owner = channels_on_two_shards(nodes)
    news, other = list(owner)

    def numsub(ch):
        return int(owner[ch].execute_command("PUBSUB", "SHARDNUMSUB", f"{PREFIX}{{{ch}}}")[1])

    async def go():
        ws = await WSClient.connect(gw.ws_url(f"channels={news},{other}"))
        await async_wait_until(lambda: numsub(news) == 1 and numsub(other) == 1,
                               msg="both channels SSUBSCRIBEd at their owners")
        for ch in (news, other):
            r = gw.publish({"channel": ch, "data": {"via": "api"}})
            assert r.status == 200, r
            assert await ws.recv_json() == {"channel": ch, "id": r.json()["id"],
                                            "data": {"via": "api"}}
            fid = fcall_publish(owner[ch], ch, '{"data":{"via":"fcall"}}')
            assert int(fid) > int(r.json()["id"])
            assert await ws.recv_json() == {"channel": ch, "id": str(fid),
                                            "data": {"via": "fcall"}}
        await ws.close()
    pgtest.run(go())
    for ch in (news, other):
        assert owner[ch].xlen(f"{PREFIX}{{{ch}}}:history") == 2


# What a backend sees that publishes with FCALL at a master the node has
# routed no call to yet: a ready node has loaded the library on every master
# of the map (SPEC §10), so the function is there.
def test_a_ready_node_has_loaded_the_library_on_every_master(native_cluster, compose_node):
    nodes, _addr, _cmd = native_cluster
    masters = [n for n in nodes if n.client().execute_command("ROLE")[0] == "master"]
    for m in masters:   # as a fresh cluster has it (replicas follow)
        m.client().execute_command("FUNCTION", "FLUSH")
    compose_node()
    owners = slot_owners(nodes[0].client())
    for m in masters:
        ch = next(f"public.{i}" for i in range(1000)
                  if owner_port(owners, f"{PREFIX}{{public.{i}}}") == m.port)
        assert int(fcall_publish(m.client(), ch, '{"data":1}')) > 0
