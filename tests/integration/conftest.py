"""Fixtures for pushgate's integration tests: a private redis-server per test
and pushgate nodes pointed at it, all stopped by PID at teardown. The logs of
every process a failing test started are attached to its report."""

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pgfixtures import *  # noqa: E402,F401,F403  (fixtures and the report hook)
