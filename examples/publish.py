#!/usr/bin/env python3
"""examples/publish.py - publish to pushgate from Python with redis-py.

    python3 examples/publish.py
    REDIS_URL=redis://:secret@10.0.0.5:6379/0 CHANNEL=news python3 examples/publish.py

Needs redis-py 4.x or later (Debian: python3-redis; or pip install redis)
and at least one gateway started once against this Redis, so that the
function is loaded.

Environment (defaults in brackets):
  REDIS_URL        the Redis the gateways use   [redis://127.0.0.1:6379/0]
  PUSHGATE_PREFIX  the gateways' --prefix       [pushgate:]
  CHANNEL          the pushgate channel         [user:42]

Sends {"event":"order.shipped","data":{"order":7}} twice: with PUBLISH (live
only, no id) and with FCALL (kept in history, returns the message id).
"""

import json
import os
import re

import redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("PUSHGATE_PREFIX", "pushgate:")
CHANNEL = os.environ.get("CHANNEL", "user:42")
# pushgate: -> pushgate_publish (every character other than a letter or digit
# becomes "_").
FN = re.sub(r"[^A-Za-z0-9]", "_", PREFIX) + "publish"


def main():
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    payload = json.dumps({"event": "order.shipped", "data": {"order": 7}})

    # Live only: the full Redis channel, with the prefix.
    nodes = r.publish(PREFIX + CHANNEL, payload)
    print(f"PUBLISH {PREFIX}{CHANNEL} -> {nodes} node(s)")

    # With history: the pushgate channel name, without the prefix.
    msg_id = r.fcall(FN, 0, CHANNEL, payload)
    print(f"FCALL {FN} {CHANNEL} -> id {msg_id}")
    r.close()


if __name__ == "__main__":
    main()
