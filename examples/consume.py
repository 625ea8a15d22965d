#!/usr/bin/env python3
"""examples/consume.py - read pushgate's events stream from Python with redis-py.

    python3 examples/consume.py
    REDIS_URL=redis://:secret@10.0.0.5:6379/0 GROUP=billing python3 examples/consume.py

Needs redis-py 4.x or later (Debian: python3-redis; or pip install redis),
Redis 7 (XAUTOCLAIM) and gateways started with --events. Prints one line per
event on stdout, for example

    connect user=42 conn=7 node=gw-a id=1764560000000-0
    subscribe user=42 conn=7 channel=room.1 node=gw-a id=1764560000001-0
    message user=42 conn=7 data={"text":"hi"} node=gw-a id=1764560000002-0
    disconnect user=42 conn=7 code=1000 reason="bye" node=gw-a id=1764560000003-0

(user= is empty for an anonymous connection; data is the client's JSON as the
gateway stored it; reason is quoted), and what it does on stderr.

Environment (defaults in brackets):
  REDIS_URL        the Redis the gateways use           [redis://127.0.0.1:6379/0]
  PUSHGATE_PREFIX  the gateways' --prefix               [pushgate:]
  GROUP            this backend's consumer group        [backend]
  CONSUMER         this worker's name within the group  [worker-1]
  CLAIM_IDLE_MS    take over entries another worker read and left
                   unacknowledged for this long         [60000]
  MAX_EVENTS       exit after this many events; 0 = run forever  [0]
  TIMEOUT          exit after this many seconds; 0 = run forever [0]

Delivery is at least once per group: an entry is acknowledged (XACK) only
after it was handled, so a worker that dies in between leaves it pending,
and it is handled again once it has been pending for CLAIM_IDLE_MS, by the
first worker of the group that looks (each looks when it starts and whenever
the stream is idle). Make handlers idempotent, keyed by the entry id. Workers
of one group share the events between them; every group gets all of them.
"""

import json
import os
import sys
import time

import redis

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("PUSHGATE_PREFIX", "pushgate:")
GROUP = os.environ.get("GROUP", "backend")
CONSUMER = os.environ.get("CONSUMER", "worker-1")
CLAIM_IDLE_MS = int(os.environ.get("CLAIM_IDLE_MS", "60000"))
MAX_EVENTS = int(os.environ.get("MAX_EVENTS", "0"))
TIMEOUT = float(os.environ.get("TIMEOUT", "0"))
STREAM = PREFIX + "events"


def describe(entry_id, f):
    """One line for one event: the fields its type has, in a fixed order."""
    parts = [f.get("type", "?"), "user=" + f.get("user", ""), "conn=" + f.get("conn", "")]
    if "channel" in f:
        parts.append("channel=" + f["channel"])
    if "code" in f:
        parts.append("code=" + f["code"])
    if "reason" in f:
        parts.append("reason=" + json.dumps(f["reason"], ensure_ascii=False))
    if "data" in f:
        parts.append("data=" + f["data"])
    parts += ["node=" + f.get("node", ""), "id=" + entry_id]
    return " ".join(parts)


def handle(r, entry_id, fields):
    # Your backend's work goes here (keyed by entry_id: it may come twice).
    print(describe(entry_id, fields), flush=True)
    # Acknowledged only once handled: at least once, never at most once.
    r.xack(STREAM, GROUP, entry_id)


def main():
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:   # "$": only events written from now on; "0" would also replay
        # everything the stream still holds (it is capped by --events-max-len).
        r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):   # the group exists already: fine
            raise
    print(f"reading {STREAM} as {GROUP}/{CONSUMER}", file=sys.stderr, flush=True)

    deadline = time.monotonic() + TIMEOUT if TIMEOUT > 0 else None
    done = 0

    def room():
        """How many entries to ask for (COUNT): no more than this run will
        handle, so that none is read and then left unacknowledged."""
        return min(100, MAX_EVENTS - done) if MAX_EVENTS > 0 else 100

    def claim_stale():
        """Entries of this group read but not acknowledged for CLAIM_IDLE_MS
        (a worker died between XREADGROUP and XACK, maybe this one): take
        them over and handle them. Redis 7 drops from the pending list the
        ids the stream no longer holds (trimmed), so only live entries come."""
        nonlocal done
        cursor = "0-0"
        while room() > 0:
            cursor, entries = r.xautoclaim(STREAM, GROUP, CONSUMER, CLAIM_IDLE_MS,
                                           start_id=cursor, count=room())[:2]
            for entry_id, fields in entries:
                handle(r, entry_id, fields)
                done += 1
            if cursor == "0-0":
                return

    claim_stale()
    while room() > 0:
        block_ms = 5000
        if deadline is not None:
            block_ms = min(block_ms, int((deadline - time.monotonic()) * 1000))
            if block_ms <= 0:   # BLOCK 0 would wait forever
                print(f"timeout after {TIMEOUT:g} s", file=sys.stderr)
                break
        # ">": entries never delivered to this group.
        res = r.xreadgroup(GROUP, CONSUMER, {STREAM: ">"}, count=room(), block=block_ms)
        if not res:
            claim_stale()   # idle: a good time to pick up what others left
            continue
        for _stream, entries in res:
            for entry_id, fields in entries:
                handle(r, entry_id, fields)
                done += 1
    print(f"{done} event(s) handled", file=sys.stderr)
    r.close()


if __name__ == "__main__":
    main()
