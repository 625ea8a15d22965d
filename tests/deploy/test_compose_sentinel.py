"""docker-compose.sentinel.yml, the overlay that puts the development cluster
on a Sentinel-managed Redis (a master, a replica, three Sentinels), as
Debian's docker-compose resolves it together with docker-compose.yml; then
the overlay's own Sentinel configuration run natively: the lines its
Sentinels write at start-up, with only the addresses changed to loopback
ones, must give Sentinels that find the master, and a pushgate node given the
overlay's --redis-url (Sentinel hosts mapped the same way) must become ready
and publish. No Docker engine is needed."""

import re
import subprocess
import urllib.parse

import pytest

import deploykit
import pgtest
from pgtest import wait_until

REPO = deploykit.REPO
SENTINELS = ["sentinel1", "sentinel2", "sentinel3"]


OVERLAY = "docker-compose.sentinel.yml"


def compose(*args):
    return deploykit.compose(OVERLAY, *args)


@pytest.fixture(scope="module")
def config():
    return deploykit.compose_config(OVERLAY)


def sentinel_conf_lines(service):
    """The config lines the Sentinel's start-up script writes."""
    script = service["command"][-1]
    return re.findall(r"^\s*'([^']*)'", script, re.M)


def test_overlay_is_valid_and_adds_replica_and_three_sentinels(config):
    assert compose("config", "-q").returncode == 0
    services = config["services"]
    assert set(services) == {"redis", "redis-replica", *SENTINELS, "node1", "node2", "node3", "nginx"}
    assert services["redis-replica"]["command"] == ["redis-server", "--replicaof", "redis", "6379"]
    for s in SENTINELS:
        lines = sentinel_conf_lines(services[s])
        assert "port 26379" in lines
        assert "sentinel monitor pushgate redis 6379 2" in lines, lines
        assert "redis-sentinel /tmp/sentinel.conf" in services[s]["command"][-1]
        assert "26379" in " ".join(services[s]["healthcheck"]["test"])


def test_nodes_find_the_master_through_all_three_sentinels(config):
    services = config["services"]
    monitor = next(l for l in sentinel_conf_lines(services["sentinel1"]) if "monitor" in l)
    master_name = monitor.split()[2]
    for n in ("node1", "node2", "node3"):
        s = services[n]
        url = urllib.parse.urlsplit(s["environment"]["PUSHGATE_REDIS_URL"])
        assert url.scheme == "redis+sentinel"
        assert url.netloc.split(",") == [f"{h}:26379" for h in SENTINELS]
        assert url.path.split("/")[1] == master_name
        for dep in ("redis", *SENTINELS):
            assert s["depends_on"][dep]["condition"] == "service_healthy"
        # the rest of the base file's node stays: id, keys, readiness check
        assert s["environment"]["PUSHGATE_NODE_ID"] == n
        assert "/readyz" in " ".join(s["healthcheck"]["test"])


def test_the_overlays_sentinel_config_runs_and_a_node_follows_it(config, redis_server, tmp_path,
                                                                 gateway_factory):
    services = config["services"]
    procs = []
    try:
        replica_port = pgtest.free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(replica_port), "--bind", "127.0.0.1", "--save", "",
             "--replicaof", "127.0.0.1", str(redis_server.port), "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports = []
        for s in SENTINELS:
            port = pgtest.free_port()
            conf = tmp_path / f"{s}.conf"
            lines = []
            for line in sentinel_conf_lines(services[s]):
                line = line.replace("port 26379", f"port {port}")
                line = line.replace(" redis 6379 ", f" 127.0.0.1 {redis_server.port} ")
                lines.append(line)
            conf.write_text("bind 127.0.0.1\n" + "\n".join(lines) + "\n")
            # Debian's redis-server package has no redis-sentinel link: the
            # same binary in sentinel mode, as redis-sentinel is in the image
            procs.append(subprocess.Popen(["redis-server", str(conf), "--sentinel"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)

        def master_of(port):
            r = subprocess.run(["redis-cli", "-p", str(port), "sentinel", "get-master-addr-by-name",
                                "pushgate"], capture_output=True, text=True, timeout=5)
            return r.stdout.split()

        for port in ports:
            wait_until(lambda: master_of(port) == ["127.0.0.1", str(redis_server.port)],
                       timeout=10, msg=f"sentinel on {port} names the master")

        # node1's environment as compose gives it, Sentinel hosts on loopback
        env = dict(services["node1"]["environment"])
        for s, port in zip(SENTINELS, ports):
            env["PUSHGATE_REDIS_URL"] = env["PUSHGATE_REDIS_URL"].replace(f"{s}:26379",
                                                                          f"127.0.0.1:{port}")
        gw = gateway_factory(env=env, redis_url=env["PUSHGATE_REDIS_URL"])   # waits for /readyz 200
        r = pgtest.api_publish(gw.port, {"channel": "news", "data": {"via": "sentinel"}},
                               api_key=env["PUSHGATE_API_KEY"])
        assert r.status == 200, r.body
        rds = redis_server.client()
        assert rds.xlen(f"{gw.prefix}history:news") == 1
    finally:
        for p in procs:
            pgtest.stop_process(p)
