"""The pytest fixtures and report hook shared by the integration and the
deployment suites: a private redis-server per test and pushgate nodes pointed
at it, all stopped by PID at teardown. Each suite's conftest.py imports
everything from here (pytest finds fixtures and hooks among a conftest's
names), so the two suites cannot drift apart."""

import pytest

import pgtest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the logs of every process a failing test started."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for p in list(pgtest.ACTIVE):
            if isinstance(p, pgtest.Gateway):
                title, lines = f"pushgate log: {p.name} (port {p.port})", 200
            elif isinstance(p, pgtest.RedisServer):
                title, lines = f"redis log (port {p.port})", 30
            elif getattr(p, "logfile", None) is not None:
                title, lines = f"{type(p).__name__.lower()} log (port {p.port})", 100
            else:
                continue
            rep.sections.append((title, pgtest.tail(p.logfile, lines)))


@pytest.fixture
def redis_server(tmp_path):
    """A fresh redis-server on a free loopback port."""
    with pgtest.running_redis(tmp_path / "redis") as srv:
        yield srv


@pytest.fixture
def rds(redis_server):
    """A redis-py client (str replies) on the test's redis-server."""
    c = redis_server.client()
    yield c
    c.close()


@pytest.fixture
def gateway_factory(redis_server, tmp_path):
    """make(args=(), env=None, name=None, start=True, ready=True) -> Gateway.
    Several nodes may share the test's Redis; all are stopped at teardown.
    A node still running then must exit 0 on SIGTERM: under AddressSanitizer
    a leak report makes it exit non-zero, and that fails the test."""
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
        bad = pgtest.stop_gateways(made)
    assert not bad, "node(s) did not exit 0 after SIGTERM at teardown:\n" + "\n".join(bad)


@pytest.fixture
def gateway(gateway_factory):
    """One node with the API key `testkey`, anyone may connect."""
    return gateway_factory(["--api-key", pgtest.API_KEY])
