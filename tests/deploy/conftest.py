"""Fixtures for pushgate's deployment tests: a private redis-server, pushgate
nodes and nginx, each on a free loopback port and stopped by PID at teardown
whatever the outcome. The logs of every process a failing test started are
attached to its report. The harness is tests/integration/pgtest.py."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import pgtest  # noqa: E402
import deploykit  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for p in list(pgtest.ACTIVE):
            if isinstance(p, pgtest.Gateway):
                rep.sections.append((f"pushgate log: {p.name} (port {p.port})",
                                     pgtest.tail(p.logfile, 200)))
            elif isinstance(p, pgtest.RedisServer):
                rep.sections.append((f"redis log (port {p.port})",
                                     pgtest.tail(p.logfile, 30)))
            elif isinstance(p, deploykit.Nginx):
                rep.sections.append((f"nginx log (port {p.port})",
                                     pgtest.tail(p.logfile, 100)))


@pytest.fixture
def redis_server(tmp_path):
    """A fresh redis-server on a free loopback port."""
    srv = pgtest.RedisServer(tmp_path / "redis")
    pgtest.ACTIVE.append(srv)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if srv in pgtest.ACTIVE:
            pgtest.ACTIVE.remove(srv)


@pytest.fixture
def rds(redis_server):
    c = redis_server.client()
    yield c
    c.close()


@pytest.fixture
def gateway_factory(redis_server, tmp_path):
    """make(args=(), name=None) -> a started, ready Gateway on the test's Redis."""
    made = []

    def make(args=(), name=None, env=None):
        gw = pgtest.Gateway(redis_server, tmp_path / "gw", args=args, env=env,
                            name=name or f"node{len(made) + 1}")
        made.append(gw)
        gw.start()
        return gw

    try:
        yield make
    finally:
        for gw in made:
            gw.stop(timeout=10)
            if gw in pgtest.ACTIVE:
                pgtest.ACTIVE.remove(gw)


@pytest.fixture
def nginx_factory(tmp_path):
    """make(upstream_text) -> a started Nginx; all stopped by PID at teardown."""
    made = []

    def make(upstream_text):
        ng = deploykit.Nginx(tmp_path / f"nginx{len(made) + 1}", upstream_text)
        made.append(ng)
        pgtest.ACTIVE.append(ng)
        ng.start()
        return ng

    try:
        yield make
    finally:
        for ng in made:
            ng.stop()
            if ng in pgtest.ACTIVE:
                pgtest.ACTIVE.remove(ng)
