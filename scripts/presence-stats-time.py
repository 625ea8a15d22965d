#!/usr/bin/python3
"""How long FCALL pushgate_presence_stats takes inside Redis on a big
channel, while every node is alive and in the window after a node died
(heartbeat lapsed) and before a live node's beat swept its entries; and
what the channel's presence keys cost in Redis memory per member.

Starts its own redis-server on a free loopback port, loads
gateway/functions.lua rendered as the gateway renders it (or --functions
FILE, e.g. an older version from `git show`), writes the members through
pushgate_presence_update in batches of 1 000 (as a node does) for two
nodes, "live" and "dead", and times each call with SLOWLOG (Redis's own
microseconds, no round trip). Every answer is checked against the exact
count. Prints one JSON line per scenario.

    scripts/presence-stats-time.py [--members 10000] [--calls 20] [--functions FILE]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
import pgtest  # noqa: E402

PREFIX = "pushgate:"
FN = pgtest.fn_name(PREFIX)
CH = "room.big"


def value(user, node, conn):
    return json.dumps({"user": user, "node": node, "conn": conn, "info": None,
                       "since": 1764277200123}, separators=(",", ":"))


def write(r, node, members):
    """members: list of (conn, user); 1 000 changes per FCALL, like a node."""
    us = []
    for i in range(0, len(members), 1000):
        args = []
        for conn, user in members[i:i + 1000]:
            args += ["+", CH, conn, value(user, node, conn)]
        r.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        r.execute_command("SLOWLOG", "RESET")
        r.fcall(FN + "presence_update", 0, node, *args)
        us.append(fcall_us(r, FN + "presence_update"))
    return us


def fcall_us(r, fn):
    for entry in r.slowlog_get(128):
        cmd = [c.decode() if isinstance(c, bytes) else c for c in entry["command"].split()] \
            if isinstance(entry["command"], (bytes, str)) else entry["command"]
        if len(cmd) > 1 and cmd[1] == fn:
            return entry["duration"]
    raise RuntimeError(f"no slowlog entry for {fn}")


def time_stats(r, calls, want):
    us = []
    for _ in range(calls):
        r.execute_command("SLOWLOG", "RESET")
        got = json.loads(r.fcall_ro(FN + "presence_stats", 0, CH))
        if got != want:
            raise AssertionError(f"stats {got} != {want}")
        us.append(fcall_us(r, FN + "presence_stats"))
    return us


def memory(r):
    total, keys = 0, {}
    for k in r.scan_iter(PREFIX + "presence*" + CH + "*"):
        n = r.memory_usage(k, samples=0)
        keys[k] = n
        total += n
    return total, keys


def scenario(redis_srv, functions, members, dead_share, both_share, calls):
    r = redis_srv.client()
    r.flushall()
    r.execute_command("FUNCTION", "FLUSH")
    r.execute_command("FUNCTION", "LOAD", "REPLACE", functions)
    n_dead = int(members * dead_share)
    n_both = int(members * both_share)     # users with a connection on each node
    dead = [(f"d{i}", f"u{i}") for i in range(n_dead)]
    # the live node's members: the rest of the users, plus a second
    # connection of the first n_both users of the dead node
    live = [(f"l{i}", f"u{i}") for i in range(n_dead, members - n_both)]
    live += [(f"b{i}", f"u{i}") for i in range(min(n_both, n_dead))]
    users_all = {u for _, u in dead} | {u for _, u in live}
    users_live = {u for _, u in live}
    r.fcall(FN + "presence_beat", 0, "live", 3600 * 1000)
    r.fcall(FN + "presence_beat", 0, "dead", 3600 * 1000)
    upd = write(r, "dead", dead) + write(r, "live", live)
    r.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    alive_us = time_stats(r, calls, {"clients": len(dead) + len(live), "users": len(users_all)})
    mem, keys = memory(r)
    # the dead node's heartbeat lapses; nothing sweeps it (no live beat)
    r.fcall(FN + "presence_beat", 0, "dead", 1)
    time.sleep(0.01)
    want = {"clients": len(live), "users": len(users_live)}
    window_us = time_stats(r, calls, want)
    r.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
    # a live node's beat sweeps the dead node: the counters must agree
    r.fcall(FN + "presence_beat", 0, "live", 3600 * 1000)
    got = json.loads(r.fcall_ro(FN + "presence_stats", 0, CH))
    if got != want or r.hlen(PREFIX + "presence:" + CH) != len(live):
        raise AssertionError(f"after the sweep: {got} != {want}")
    return {
        "members": len(dead) + len(live), "on_dead_node": len(dead), "users": len(users_all),
        "users_only_on_dead_node": len(users_all - users_live),
        "stats_us_alive": {"median": statistics.median(alive_us), "max": max(alive_us)},
        "stats_us_dead_window": {"median": statistics.median(window_us), "max": max(window_us)},
        "update_us_per_change": round(sum(upd) / (len(dead) + len(live)), 2),
        "memory_bytes": mem, "bytes_per_member": round(mem / (len(dead) + len(live)), 1),
        "keys": {k[len(PREFIX):]: v for k, v in sorted(keys.items())},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=10000)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--functions", help="a functions.lua template (default: the tree's)")
    a = ap.parse_args()
    text = pgtest.render_functions(PREFIX)
    if a.functions:
        text = Path(a.functions).read_text()
        for k, v in (("@PREFIX@", PREFIX), ("@FN@", FN), ("@HISTORY_SIZE@", "100"),
                     ("@HISTORY_TTL@", "300"), ("@MAX_BYTES@", "65536"),
                     ("@REVOKE_TTL@", "86400")):
            text = text.replace(k, v)
    srv = pgtest.RedisServer(tempfile.mkdtemp(prefix="pg-pstats-")).start()
    try:
        print(json.dumps({"redis": srv.client().info("server")["redis_version"]}))
        for dead_share, both_share in ((0.5, 0.0), (0.5, 0.1), (1.0, 0.0), (0.01, 0.0)):
            res = scenario(srv, text, a.members, dead_share, both_share, a.calls)
            print(json.dumps(res), flush=True)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
