"""Fixtures for the conformance suite: the integration suite's (a private
redis-server per case, pushgate nodes stopped by PID, logs attached to a
failing case) imported from tests/integration, plus conformkit's `node`,
which checks after every case that the node still serves a fresh client."""

import os
import sys


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "integration"))
sys.path.insert(0, HERE)

from pgfixtures import *  # noqa: E402,F401,F403  (fixtures and the report hook)
from conformkit import node  # noqa: E402,F401
