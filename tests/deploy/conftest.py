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


# redis_server, rds, gateway_factory, gateway and the report hook
from pgfixtures import *  # noqa: E402,F401,F403


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
