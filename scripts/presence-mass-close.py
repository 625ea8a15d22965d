#!/usr/bin/python3
"""A mass disconnect with presence and events on, measured with
pushgate-bench --close-all: what the node writes to Redis for it, how long
until presence is exact again, and whether it is (every presence key of the
run gone, every channel's stats 0, exactly one disconnect entry per
connection in the events stream).

Starts its own redis-server and one gateway (--events, presence on the
user channels and on the topics room.*), then runs
    pushgate-bench --url ws://.../ws?channels=room.{user} -c N --users U
                   --jwt-secret S --close-all --server-pid <gateway>
so connection g is user u<g % U> in its own user channel and in the
presence topic room.u<g % U> (U rooms of N/U members; with --shared-room
all are also in room.all, whose every leave goes to every member still
there). A MONITOR connection records every command the node sends, tagged
(presence_update with removals or only additions, XADD by event type, join
or leave PUBLISH); the close's commands are those from the first one that a
close caused, and presence is exact at the last presence_update with
removals (Redis's clock, both). MONITOR costs Redis a little per command,
so the times are slightly pessimistic.

Raise the open-file limit first (ulimit -n 20000). Prints one JSON line.

    scripts/presence-mass-close.py --bench build/tools/bench/pushgate-bench \\
        [--connections 10000] [--users 2500]
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
import pgtest  # noqa: E402

PREFIX = "pushgate:"
SECRET = "mass-close-secret"

class Monitor(threading.Thread):
    """MONITOR on its own socket: (Redis time, kind) of every command sent by
    a client (not the ones run inside a function), kind tagged as above.
    The script's own commands (scard, ping, xrange, ...) are told apart by
    name."""

    OWN = {"scard", "ping", "xrange", "scan", "fcall_ro", "info", "client", "monitor"}

    def __init__(self, port, recs):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.recs = recs
        self.done = False

    def run(self):
        buf = b""
        while not self.done:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            buf += data
            lines = buf.split(b"\r\n")
            buf = lines.pop()
            for ln in lines:
                self.line(ln)

    def line(self, ln):
        m = re.match(rb'\+(\d+\.\d+) \[\d+ ([^\]]*)\] "([^"]*)"(?: "([^"]*)")?', ln)
        if not m or m.group(2) == b"lua":
            return
        name = m.group(3).decode().lower()
        if name in self.OWN:
            return
        kind = name
        if name == "fcall":
            fn = (m.group(4) or b"").decode()
            kind = fn
            if fn.endswith("presence_update"):
                adds = ln.count(b' "+" ')
                dels = ln.count(b' "-" ') + ln.count(b' "!" ')
                kind = "presence_update:" + ("mixed" if adds and dels else
                                             "remove" if dels else "add")
        elif name == "xadd":
            t = re.search(rb'"type" "([a-z]+)"', ln)
            kind = "xadd:" + (t.group(1).decode() if t else "?")
        elif name == "publish":
            kind = "publish:" + ("leave" if b"pushgate.leave" in ln else
                                 "join" if b"pushgate.join" in ln else "other")
        self.recs.append((float(m.group(1)), kind))

    def stop(self):
        self.done = True
        self.sock.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", required=True, help="the pushgate-bench binary")
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--users", type=int, default=2500)
    ap.add_argument("--shared-room", action="store_true",
                    help="also put every connection in room.all")
    ap.add_argument("--timeout", type=float, default=180)
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pg-massclose-"))
    srv = pgtest.RedisServer(tmp / "redis").start()
    gw = pgtest.Gateway(srv, tmp, ["--node-id", "gw-mass", "--jwt-secret", SECRET,
                                    "--public-topics", "room.*", "--presence-topics", "room.*",
                                    "--events", "--presence-ttl", "60",
                                    "--log-level", "warn"], name="gw")
    bench = None
    try:
        gw.start()
        r = srv.client()
        rooms = sorted({f"room.u{g % a.users}" for g in range(a.connections)})
        if a.shared_room:
            rooms.append("room.all")
        users = sorted({f"user:u{g % a.users}" for g in range(a.connections)})
        want_entries = 2 * a.connections + (a.connections if a.shared_room else 0)
        index = PREFIX + "presence-node:gw-mass"
        recs = []
        mon = Monitor(srv.port, recs)
        mon.start()
        path = "/ws?channels=room.{user}" + (",room.all" if a.shared_room else "")
        cmd = [a.bench, "--url", f"ws://127.0.0.1:{gw.port}{path}", "-c", str(a.connections),
               "--users", str(a.users), "--jwt-secret", SECRET, "--close-all",
               "--server-pid", str(gw.pid), "--timeout", str(a.timeout), "--drain", "60", "-q"]
        out = tmp / "bench.json"
        with open(out, "wb") as f:
            bench = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        bench.wait(a.timeout)
        report = json.loads(out.read_text().strip().splitlines()[-1])
        pgtest.wait_until(lambda: r.scard(index) == 0, timeout=a.timeout, interval=0.01,
                          msg="every channel of the node empty")
        pgtest.wait_until(lambda: sum(1 for x in list(recs) if x[1] == "xadd:disconnect")
                          >= a.connections, timeout=10, interval=0.05,
                          msg="a disconnect XADD each seen by MONITOR")
        r.ping()   # flushes the monitor past everything the node sent
        time.sleep(0.5)
        mon.stop()
        recs = list(recs)
        caused = ("xadd:disconnect", "presence_update:remove", "presence_update:mixed",
                  "publish:leave")
        t0 = min(x[0] for x in recs if x[1] in caused)
        t_exact = max(x[0] for x in recs
                      if x[1] in ("presence_update:remove", "presence_update:mixed"))
        t_last_disc = max(x[0] for x in recs if x[1] == "xadd:disconnect")
        delta = {}
        for ts, kind in recs:
            if ts >= t0:
                delta[kind] = delta.get(kind, 0) + 1

        # exactness, checked after the clock stopped
        types = {}
        for _, f in r.xrange(PREFIX + "events", "-", "+"):
            types[f["type"]] = types.get(f["type"], 0) + 1
        left = [k for k in r.scan_iter(PREFIX + "presence*", count=1000)
                if k != PREFIX + "presence-nodes"]
        nonzero = []
        for c in rooms + users:
            s = json.loads(r.fcall_ro("pushgate_presence_stats", 0, c))
            if s != {"clients": 0, "users": 0}:
                nonzero.append((c, s))
        metrics = gw.metrics()
        print(json.dumps({
            "connections": a.connections, "users": a.users, "rooms": len(rooms),
            "entries_removed": want_entries,
            "bench": {"ok": report.get("ok"),
                      "connected": report.get("connect", {}).get("connected"),
                      "failed": report.get("connect", {}).get("failed"),
                      "close": report.get("close"),
                      "server_cpu_s": report.get("server", {}).get("cpu_s")},
            "presence_exact_after_s": round(t_exact - t0, 3),
            "last_disconnect_event_after_s": round(t_last_disc - t0, 3),
            "commands_for_the_close": dict(sorted(delta.items())),
            "commands_total": sum(delta.values()),
            "events": types,
            "events_dropped": pgtest.metric_value(metrics, "pushgate_events_dropped_total"),
            "presence_keys_left": left[:5], "nonzero_stats": nonzero[:5],
            "exact": not left and not nonzero and types.get("disconnect") == a.connections,
        }))
    finally:
        if bench and bench.poll() is None:
            pgtest.stop_process(bench)
        gw.stop()
        srv.stop()


if __name__ == "__main__":
    main()
