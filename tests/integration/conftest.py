"""Fixtures for pushgate's integration tests: a private redis-server per test
and pushgate nodes pointed at it, all stopped by PID at teardown. The logs of
every process a failing test started are attached to its report."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pgtest  # noqa: E402


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
    """A redis-py client (str replies) on the test's redis-server."""
    c = redis_server.client()
    yield c
    c.close()


@pytest.fixture
def gateway_factory(redis_server, tmp_path):
    """make(args=(), env=None, name=None, start=True, ready=True) -> Gateway.
    Several nodes may share the test's Redis; all are stopped at teardown."""
    made = []

    def make(args=(), env=None, name=None, start=True, ready=True, redis=None,
             redis_url=None):
        gw = pgtest.Gateway(redis or redis_server, tmp_path / "gw",
                            args=args, env=env,
                            name=name or f"gw{len(made) + 1}", ready=ready,
                            redis_url=redis_url)
        made.append(gw)
        if start:
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
def gateway(gateway_factory):
    """One node with the API key `testkey`, anyone may connect."""
    return gateway_factory(["--api-key", pgtest.API_KEY])
