#!/usr/bin/env python3
"""examples/receive.py - receive from pushgate in Python over WebSocket.

    python3 examples/receive.py
    CHANNELS=news,orders.eu PUSHGATE_TOKEN=eyJ... python3 examples/receive.py
    SINCE=1764277200123000 python3 examples/receive.py    # resume after that id

Needs the `websockets` package (Debian: python3-websockets; or pip install
websockets), asyncio API. Prints every delivery as one JSON line on stdout,
{"channel":...,"event":...,"id":...,"data":...}, and what it does (connects,
notices, errors) on stderr. When the connection drops it reconnects with
since=<highest id seen>,<channel>:<id>,... (the last id of each channel below
the highest: a Redis Cluster orders ids per channel only), so the gateway
replays from history what it missed, and it drops a message whose id is not
above the last one of its channel (a duplicate at the seam). If history no
longer reaches back that far, it says so on stderr.

Environment (defaults in brackets):
  PUSHGATE_URL    a gateway node or the load balancer  [http://127.0.0.1:8080]
  PUSHGATE_TOKEN  a JWT: receives user:<sub> and the topics it allows  [none]
  CHANNELS        comma list of topics to subscribe  [news]
  SINCE           resume after this message id  [none: live only]
  MAX_MESSAGES    exit after this many deliveries; 0 = run forever  [0]
"""

import asyncio
import json
import os
import random
import sys
from urllib.parse import urlencode

import websockets

BASE = os.environ.get("PUSHGATE_URL", "http://127.0.0.1:8080").rstrip("/")
TOKEN = os.environ.get("PUSHGATE_TOKEN", "")
CHANNELS = os.environ.get("CHANNELS", "news")
MAX_MESSAGES = int(os.environ.get("MAX_MESSAGES", "0"))


def ws_url(since):
    base = BASE.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    q = {}
    if TOKEN:
        q["token"] = TOKEN
    if CHANNELS:
        q["channels"] = CHANNELS
    if since:
        q["since"] = since
    return f"{base}/ws" + (f"?{urlencode(q)}" if q else "")


def since_of(last):
    """The since= for a reconnect: the highest id, then <channel>:<id> for
    each channel whose own last id is below it (README "Redis Cluster");
    the bare id alone past the gateway's limit of 66 entries / 4096 bytes."""
    if not last:
        return None
    top = max(last.values(), key=int)
    out = [top] + [f"{ch}:{i}" for ch, i in last.items() if int(i) < int(top)]
    text = ",".join(out)
    return text if len(out) <= 66 and len(text) <= 4096 else top


def log(*args):
    print(*args, file=sys.stderr, flush=True)


async def main():
    first_since = os.environ.get("SINCE") or None
    last = {}  # channel -> last id received on it (decimal strings)
    received = 0
    backoff = 0.5
    while True:
        since = since_of(last) or first_since
        url = ws_url(since)
        try:
            async with websockets.connect(url, max_size=None) as ws:
                log(f"connected to {BASE} channels={CHANNELS} since={since}")
                backoff = 0.5
                async for raw in ws:
                    msg = json.loads(raw)
                    if "type" in msg:  # a reply to a command, or a notice
                        if msg["type"] == "recovery" and not msg.get("complete"):
                            log("history did not reach back to since: some "
                                "messages are lost; reload your state")
                        else:
                            log("notice:", raw)
                        continue
                    mid, ch = msg.get("id"), msg.get("channel")
                    if mid and ch:  # ids rise per channel
                        if ch in last and int(mid) <= int(last[ch]):
                            continue  # already had it
                        last[ch] = mid
                    print(json.dumps(msg), flush=True)
                    received += 1
                    if MAX_MESSAGES and received >= MAX_MESSAGES:
                        return
                # The server closed cleanly (1001: the node is draining).
                log(f"connection lost (closed {ws.close_code} {ws.close_reason}); "
                    "retrying")
        except websockets.exceptions.InvalidHandshake as e:
            # websockets 10-13: e.status_code; 14+: e.response.status_code
            status = getattr(e, "status_code", None) or \
                getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):  # retrying will not help
                log(f"refused with {status}: check PUSHGATE_TOKEN and CHANNELS")
                sys.exit(1)
            log(f"handshake failed ({e}); retrying")
        except (OSError, websockets.exceptions.ConnectionClosed) as e:
            log(f"connection lost ({e}); retrying")
        # Jittered, capped backoff so a fleet of clients does not reconnect
        # to a restarted node all at once.
        await asyncio.sleep(backoff * (0.5 + random.random()))
        backoff = min(backoff * 2, 30)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
