"""docker-compose.yml, as Debian's docker-compose (1.29) resolves it: valid,
and the development cluster the README promises: Redis, three pushgate
nodes built from deploy/Dockerfile with readiness health checks, nginx with
the project's config publishing 8080 and pointing at exactly those nodes.
No Docker engine is needed: `config` only parses and resolves."""

import re

import pytest

import deploykit

REPO = deploykit.REPO
pytestmark = pytest.mark.skipif(deploykit.COMPOSE is None, reason=deploykit.NO_COMPOSE)


def compose(*args):
    return deploykit.compose(None, *args)


@pytest.fixture(scope="module")
def config():
    return deploykit.compose_config(None)


def test_config_is_valid():
    r = compose("config", "-q")
    assert r.returncode == 0, f"docker-compose config -q: {r.stderr}"
    assert r.stdout == ""


def test_services(config):
    services = config["services"]
    nodes = sorted(n for n, s in services.items()
                   if s.get("build", {}).get("dockerfile") == "deploy/Dockerfile")
    assert nodes == ["node1", "node2", "node3"]
    assert set(services) == {"redis", "nginx", *nodes}
    assert services["redis"]["image"].startswith("redis:7")


def test_nodes_built_from_the_repo_with_readiness_checks(config):
    services = config["services"]
    ids = set()
    for name in ("node1", "node2", "node3"):
        s = services[name]
        assert s["build"]["context"] == str(REPO)
        hc = " ".join(s["healthcheck"]["test"])
        assert re.search(r"http://localhost:8080/readyz\b", hc), hc
        env = s["environment"]
        assert env["PUSHGATE_REDIS_URL"].startswith("redis://redis:6379")
        ids.add(env["PUSHGATE_NODE_ID"])
        assert s["depends_on"]["redis"]["condition"] == "service_healthy"
        # Compose must wait longer than the node drains (--drain-timeout 10 s).
        grace = s.get("stop_grace_period", "10s")
        assert int(grace.rstrip("s")) > 10, grace
    assert ids == {"node1", "node2", "node3"}
    assert "healthcheck" in services["redis"]


def test_nginx_publishes_8080_in_front_of_the_nodes(config):
    ng = config["services"]["nginx"]
    ports = ng["ports"]
    assert any(str(p.get("published")) == "8080" and str(p.get("target")) == "8080"
               if isinstance(p, dict) else p.startswith("8080:") for p in ports), ports
    vols = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in ng["volumes"]]
    assert any(v.startswith(str(REPO / "deploy" / "nginx.conf") + ":/etc/nginx/nginx.conf")
               for v in vols), vols
    assert any(v.startswith(str(REPO / "deploy" / "nginx-upstream.conf") +
                            ":/etc/nginx/pushgate-upstream.conf") for v in vols), vols
    for n in ("node1", "node2", "node3"):
        assert ng["depends_on"][n]["condition"] == "service_healthy"
    # The upstream file names the compose services on the port they listen on.
    upstream = deploykit.NGINX_UPSTREAM.read_text()
    servers = re.findall(r"^\s*server\s+(\S+?)(?:\s|;)", upstream, re.M)
    assert servers == ["node1:8080", "node2:8080", "node3:8080"]
    assert re.search(r"^\s*listen\s+8080;", deploykit.NGINX_CONF.read_text(), re.M)


def test_dockerfile_healthcheck_is_readiness():
    text = (REPO / "deploy" / "Dockerfile").read_text()
    hc = re.search(r"^HEALTHCHECK\b(?:[^\n]*\\\n)*[^\n]*", text, re.M)
    assert hc and "/readyz" in hc.group(0), hc and hc.group(0)
    assert re.search(r"^EXPOSE\s+8080\b", text, re.M)
