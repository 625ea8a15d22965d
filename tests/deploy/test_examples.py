"""examples/ run for real: every publisher example (redis-cli, Python, Node.js,
Go, curl) against a real redis-server and pushgate, checked by a WebSocket
receiver that must get exactly what the example published (channel, event,
data, and the id the example printed for FCALL / the API); the Python
receiver prints what is published, resumes with SINCE, and survives a node
going away behind nginx without losing a message; the events-stream
consumers (Python, Node.js, Go) print a client's events in order, acknowledge
each and take over what a dead worker left pending. Examples run as a user
would run them: their own interpreter, settings from the environment only."""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import deploykit
import pgtest

REPO = deploykit.REPO
EX = REPO / "examples"
SECRET = "examples-secret"
PYTHON = "/usr/bin/python3"
PAYLOAD = {"event": "order.shipped", "data": {"order": 7}}
GOPATH = "/usr/share/gocode"   # Debian's golang-*-dev packages live here


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PUSHGATE_") and k not in ("REDIS_URL", "CHANNEL",
                                                          "CHANNELS", "SINCE")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_example(cmd, env, cwd=None, timeout=120):
    r = subprocess.run(cmd, env=env, cwd=str(cwd or REPO), capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r


@pytest.fixture(params=["pushgate:", "shop-eu:"])
def node(request, gateway_factory):
    """One node; the second prefix proves the examples derive the function
    name (shop-eu: -> shop_eu_publish) rather than hard-coding it."""
    return gateway_factory(["--api-key", pgtest.API_KEY, "--jwt-secret", SECRET,
                            "--allow-anonymous", "--public-topics", "news",
                            "--prefix", request.param])


async def receiver(gw):
    """A WebSocket client of user 42 (every example's default channel is
    user:42) also subscribed to `news`, once the node has subscribed both."""
    c = await pgtest.ws_connect(gw, "token=" + pgtest.mint_hs256(SECRET, {"sub": "42"}) +
                                "&channels=news")
    rds = gw.redis.client()
    try:
        await pgtest.async_wait_until(
            lambda: all(n == 1 for _, n in rds.pubsub_numsub(gw.prefix + "user:42",
                                                             gw.prefix + "news")),
            timeout=5, msg="node subscribed to user:42 and news")
    finally:
        rds.close()
    return c


async def received_before_sentinel(gw, c):
    """Everything c receives up to a sentinel published after the example:
    exactly what the example delivered, no more, without a guessed wait."""
    rds = gw.redis.client()
    try:
        sid = rds.fcall(gw.fn + "publish", 0, "user:42", json.dumps({"data": "sentinel"}))
    finally:
        rds.close()
    got = []
    while True:
        m = await c.recv_json(10)
        if m.get("id") == str(sid):
            assert m["data"] == "sentinel"
            return got
        got.append(m)


def check_redis_publisher(gw, cmd, cwd=None, env_extra=None):
    """Run a PUBLISH + FCALL example; the receiver gets the live message
    (no id) and the history-backed one with the id the example printed."""
    async def main():
        c = await receiver(gw)
        try:
            env = clean_env(REDIS_URL=gw.redis.url, PUSHGATE_PREFIX=gw.prefix,
                            **(env_extra or {}))
            r = run_example(cmd, env, cwd)
            assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
            assert f"PUBLISH {gw.prefix}user:42 -> 1 node(s)" in r.stdout, r.stdout
            m = re.search(rf"^FCALL {re.escape(gw.fn)}publish user:42 -> id (\d+)$",
                          r.stdout, re.M)
            assert m, r.stdout
            got = await received_before_sentinel(gw, c)
            assert got == [{"channel": "user:42", **PAYLOAD},
                           {"channel": "user:42", "event": "order.shipped",
                            "id": m.group(1), "data": {"order": 7}}]
        finally:
            await c.close()

    pgtest.run(main(), timeout=180)


def test_publish_sh(node):
    assert shutil.which("redis-cli"), "redis-cli missing: scripts/deps.sh installs redis-tools"
    check_redis_publisher(node, ["sh", str(EX / "publish.sh")])


def test_publish_py(node):
    check_redis_publisher(node, [PYTHON, str(EX / "publish.py")])


@pytest.fixture(scope="module")
def node_example_dir(tmp_path_factory):
    """examples/node with its dependencies: the checkout's node_modules when
    `npm ci` was run there, else a temp copy installed from the lock file."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed (scripts/deps.sh installs nodejs and npm)")
    src = EX / "node"
    if (src / "node_modules" / "redis" / "package.json").exists():
        return src
    dst = tmp_path_factory.mktemp("node-example")
    for f in ("package.json", "package-lock.json", "publish.js"):
        shutil.copy(src / f, dst / f)
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=str(dst), capture_output=True, text=True, timeout=240,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        pytest.skip(f"npm ci in examples/node failed (registry unreachable?): {r.stderr[-500:]}")
    return dst


def test_publish_node(node, node_example_dir):
    check_redis_publisher(node, ["node", "publish.js"], cwd=node_example_dir)


def go_build(tmp_path_factory, name):
    """examples/go/<name>.go built offline: Debian's Go in GOPATH mode with
    Debian's redigo (the Go module proxy is not reachable here)."""
    go = shutil.which("go")
    if not go:
        pytest.skip("go not installed (Debian: golang-go golang-github-gomodule-redigo-dev)")
    if not (Path(GOPATH) / "src/github.com/gomodule/redigo/redis").is_dir():
        pytest.skip("redigo not installed (Debian: golang-github-gomodule-redigo-dev)")
    out = tmp_path_factory.mktemp(f"go-{name}")
    env = clean_env(GO111MODULE="off", GOPATH=GOPATH, GOCACHE=str(out / "cache"),
                    GOFLAGS="", CGO_ENABLED="0")
    r = subprocess.run([go, "build", "-o", str(out / name),
                        str(EX / "go" / f"{name}.go")], env=env, capture_output=True,
                       text=True, timeout=280, cwd=str(EX / "go"),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"go build examples/go/{name}.go:\n{r.stderr}"
    return out / name


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory):
    """examples/go/publish.go, built (go_build)."""
    return go_build(tmp_path_factory, "publish")


def test_publish_go(node, go_binary):
    check_redis_publisher(node, [str(go_binary)])


def test_publish_curl(node):
    assert shutil.which("curl"), "curl missing: scripts/deps.sh installs it"

    async def main():
        c = await receiver(node)
        try:
            env = clean_env(PUSHGATE_URL=f"http://127.0.0.1:{node.port}",
                            PUSHGATE_API_KEY=pgtest.API_KEY)
            r = run_example(["sh", str(EX / "publish-curl.sh")], env)
            assert r.returncode == 0, r.stdout + r.stderr
            one, many = [json.loads(line) for line in r.stdout.splitlines()]
            assert set(one) == {"id"} and set(many) == {"id", "ids"}
            assert len(many["ids"]) == 2 and many["id"] == many["ids"][1]
            got = await received_before_sentinel(node, c)
            want = [{"channel": "user:42", "event": "order.shipped", "id": one["id"],
                     "data": {"order": 7}},
                    {"channel": "news", "id": many["ids"][0], "data": "maintenance at 22:00"},
                    {"channel": "user:42", "id": many["ids"][1],
                     "data": "maintenance at 22:00"}]
            assert sorted(got, key=lambda m: int(m["id"])) == want

            # A wrong key: the script fails loudly and nothing is delivered.
            r = run_example(["sh", str(EX / "publish-curl.sh")],
                            clean_env(PUSHGATE_URL=f"http://127.0.0.1:{node.port}",
                                      PUSHGATE_API_KEY="wrong"))
            assert r.returncode != 0
            assert "401" in r.stderr or '"error"' in r.stdout, r.stdout + r.stderr
            assert await received_before_sentinel(node, c) == []
        finally:
            await c.close()

    pgtest.run(main(), timeout=120)


# --------------------------------------------------------------------------
# examples/receive.py


class Receiver:
    """examples/receive.py as a child process; stdout/stderr in files."""

    def __init__(self, tmp_path, **env):
        self.out = tmp_path / "receive.out"
        self.err = tmp_path / "receive.err"
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([PYTHON, str(EX / "receive.py")],
                                         env=clean_env(**env), stdout=o, stderr=e,
                                         stdin=subprocess.DEVNULL, cwd=str(tmp_path))

    def lines(self):
        return [json.loads(x) for x in self.out.read_text().splitlines() if x.strip()]

    def stderr(self):
        return self.err.read_text()

    def wait_stderr(self, text, count=1, timeout=10):
        pgtest.wait_until(lambda: self.stderr().count(text) >= count or
                          self.proc.poll() is not None, timeout=timeout,
                          msg=f"receive.py stderr {text!r} x{count}")
        assert self.stderr().count(text) >= count, self.stderr()

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"receive.py still running; stdout: {self.out.read_text()}"
                                 f"\nstderr: {self.stderr()}")

    def stop(self):
        pgtest.stop_process(self.proc, signal.SIGTERM, timeout=5)


@pytest.fixture
def receivers(tmp_path):
    made = []

    def make(**env):
        d = tmp_path / f"recv{len(made) + 1}"
        d.mkdir()
        r = Receiver(d, **env)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def plain_node(gateway_factory):
    return gateway_factory(["--api-key", pgtest.API_KEY, "--jwt-secret", SECRET,
                            "--allow-anonymous", "--public-topics", "news"])


def test_receive_py_prints_what_is_published(plain_node, rds, receivers):
    gw = plain_node
    r = receivers(PUSHGATE_URL=f"http://127.0.0.1:{gw.port}", CHANNELS="news",
                  MAX_MESSAGES=3)
    r.wait_stderr("connected to")
    pgtest.wait_until(lambda: rds.pubsub_numsub("pushgate:news")[0][1] == 1,
                      msg="node subscribed to news")
    a = rds.fcall("pushgate_publish", 0, "news", json.dumps(PAYLOAD))
    rds.publish("pushgate:news", "plain text")
    b = gw.publish({"channel": "news", "data": [1, "two"]}).json()["id"]
    assert r.wait_exit() == 0, r.stderr()
    assert r.lines() == [{"channel": "news", "event": "order.shipped", "id": str(a),
                          "data": {"order": 7}},
                         {"channel": "news", "data": "plain text"},
                         {"channel": "news", "id": b, "data": [1, "two"]}]


def test_receive_py_resumes_with_since_and_token(plain_node, rds, receivers):
    gw = plain_node
    ids = [rds.fcall("pushgate_publish", 0, ch, json.dumps({"data": {"n": i}}))
           for i, ch in enumerate(["news", "news", "user:42", "user:7"])]
    token = pgtest.mint_hs256(SECRET, {"sub": "42"})
    r = receivers(PUSHGATE_URL=f"http://127.0.0.1:{gw.port}", CHANNELS="news",
                  PUSHGATE_TOKEN=token, SINCE=ids[0], MAX_MESSAGES=2)
    assert r.wait_exit() == 0, r.stderr()
    # After SINCE: the second news message and user 42's, not user 7's.
    assert r.lines() == [{"channel": "news", "id": str(ids[1]), "data": {"n": 1}},
                         {"channel": "user:42", "id": str(ids[2]), "data": {"n": 2}}]


def test_receive_py_refused_channel_exits_with_reason(plain_node, receivers):
    r = receivers(PUSHGATE_URL=f"http://127.0.0.1:{plain_node.port}", CHANNELS="secret")
    assert r.wait_exit() == 1
    assert "refused with 403" in r.stderr()


def test_receive_py_fails_over_behind_nginx_without_loss(gateway_factory, nginx_factory,
                                                         rds, receivers):
    """receive.py through nginx, on two channels; the node holding it stops
    (SIGTERM, drain); what is published while it is away arrives after it
    reconnects, through nginx, to another node, with since=<last id> plus the
    position of the channel whose last id is below it: nothing lost, no
    duplicate."""
    nodes = [gateway_factory(["--public-topics", "news,sports", "--node-id", f"node{i}"],
                             name=f"node{i}") for i in (1, 2, 3)]
    ng = nginx_factory(deploykit.render_upstream([n.port for n in nodes]))
    r = receivers(PUSHGATE_URL=f"http://127.0.0.1:{ng.port}", CHANNELS="news,sports",
                  MAX_MESSAGES=4)
    r.wait_stderr("connected to")
    pgtest.wait_until(lambda: rds.pubsub_numsub("pushgate:news")[0][1] == 1,
                      msg="a node subscribed to news")
    m0 = rds.fcall("pushgate_publish", 0, "sports", json.dumps({"data": 0}))
    m1 = rds.fcall("pushgate_publish", 0, "news", json.dumps({"data": 1}))
    pgtest.wait_until(lambda: len(r.lines()) == 2, msg="first messages printed")
    holder = [n for n in nodes if deploykit.node_connections(n) == 1]
    assert len(holder) == 1
    assert holder[0].stop() == 0
    r.wait_stderr("connection lost")
    m2 = rds.fcall("pushgate_publish", 0, "sports", json.dumps({"data": 2}))  # while away
    r.wait_stderr("connected to", count=2)
    pgtest.wait_until(lambda: rds.pubsub_numsub("pushgate:news")[0][1] == 1,
                      msg="another node subscribed to news")
    m3 = rds.fcall("pushgate_publish", 0, "news", json.dumps({"data": 3}))
    assert r.wait_exit() == 0, r.stderr()
    assert r.lines() == [{"channel": ch, "id": str(m), "data": d}
                         for ch, m, d in (("sports", m0, 0), ("news", m1, 1),
                                          ("sports", m2, 2), ("news", m3, 3))]
    assert f"since={m1},sports:{m0}" in r.stderr()


# --------------------------------------------------------------------------
# examples/browser.html


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])


def test_browser_html_is_a_page_that_loads_the_gateways_client(plain_node):
    text = (EX / "browser.html").read_text()
    p = _Scripts()
    p.feed(text)
    p.close()
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert {"html", "head", "body", "script"} <= set(p.tags)
    assert {"log", "state"} <= p.ids
    assert "'/pushgate.js'" in text and "new PushGate(" in text
    # What it loads is served by every node, as JavaScript defining PushGate.
    r = plain_node.get("/pushgate.js")
    assert r.status == 200
    assert "javascript" in r.headers.get("content-type", "")
    assert b"PushGate" in r.body


CHROMIUM = "/usr/bin/chromium"


class Chromium:
    """Headless Debian Chromium driven over the DevTools protocol (plain
    websockets, no extra package), in its own session so that its helper
    processes go with it; stopped by PID."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "chromium"
        self.dir.mkdir()
        self.log = self.dir / "chromium.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--remote-debugging-address=127.0.0.1",
                 "--remote-debugging-port=0", f"--user-data-dir={self.dir / 'profile'}",
                 "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        m = pgtest.wait_until(
            lambda: self.proc.poll() is None and re.search(
                r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", self.log.read_text()),
            timeout=30, msg="chromium DevTools endpoint")
        self.port = int(m.group(1))
        self.ws = None
        self.seq = 0

    async def attach(self):
        import websockets
        targets = json.loads(pgtest.http_request(self.port, "GET", "/json/list").body)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await websockets.connect(page["webSocketDebuggerUrl"], max_size=None,
                                           ping_interval=None)

    async def call(self, method, **params):
        self.seq += 1
        my = self.seq
        await self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            m = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if m.get("id") == my:
                assert "error" not in m, m
                return m["result"]

    async def js(self, expr):
        r = await self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def static_examples():
    """examples/ over HTTP on a loopback port, as the page's header says."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(EX)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    t.join(5)


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason="chromium not installed (scripts/deps.sh installs Debian's chromium)")
@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_browser_html_in_chromium_shows_what_is_published(gateway_factory, rds,
                                                          static_examples, tmp_path,
                                                          transport):
    page_origin = f"http://127.0.0.1:{static_examples}"
    gw = gateway_factory(["--public-topics", "news", "--allowed-origins", page_origin])
    browser = Chromium(tmp_path)

    async def main():
        try:
            await browser.attach()
            await browser.call("Page.navigate",
                               url=f"{page_origin}/browser.html?gateway=http://127.0.0.1:"
                                   f"{gw.port}&channels=news&transport={transport}")
            await pgtest.async_wait_until(
                lambda: browser.js("document.getElementById('state').textContent"),
                timeout=15, msg="page loaded")
            await pgtest.async_wait_until(
                lambda: rds.pubsub_numsub("pushgate:news")[0][1] == 1,
                timeout=15, msg="the page's connection subscribed news")
            mid = rds.fcall("pushgate_publish", 0, "news", json.dumps(PAYLOAD))
            want = [{"channel": "news", "event": "order.shipped", "id": str(mid),
                     "data": {"order": 7}}]
            got = await pgtest.async_wait_until(
                lambda: browser.js("window.received.length && JSON.stringify(window.received)"),
                timeout=10, msg="the page received the message")
            assert json.loads(got) == want
            # and shows it
            shown = await browser.js(
                "Array.from(document.querySelectorAll('#log li')).map(li => li.textContent)")
            assert [json.loads(x) for x in shown] == want
            assert await browser.js("document.getElementById('state').textContent") == "open"
        finally:
            if browser.ws is not None:
                await browser.ws.close()

    try:
        pgtest.run(main(), timeout=60)
    finally:
        browser.stop()


# --------------------------------------------------------------------------
# examples/consume.py, examples/node/consume.js, examples/go/consume.go: the
# events stream (SPEC §9) read by a consumer group, as the README shows.

EVENTS_PREFIX = "shop-eu:"   # not the default: the consumers must use PUSHGATE_PREFIX


@pytest.fixture
def events_node(gateway_factory):
    return gateway_factory(["--jwt-secret", SECRET, "--public-topics", "news", "--events",
                            "--node-id", "ev1", "--prefix", EVENTS_PREFIX])


@pytest.fixture(scope="module")
def go_consume_binary(tmp_path_factory):
    """examples/go/consume.go, built like publish.go (go_build)."""
    return go_build(tmp_path_factory, "consume")


@pytest.fixture(params=["python", "node", "go"])
def consumer_cmd(request):
    """(argv, cwd) of one consumer example, run as a user would run it."""
    if request.param == "python":
        return [PYTHON, str(EX / "consume.py")], REPO
    if request.param == "node":
        d = request.getfixturevalue("node_example_dir")
        if d != EX / "node":   # a temp copy made for publish.js: add the consumer
            shutil.copy(EX / "node" / "consume.js", d / "consume.js")
        return ["node", "consume.js"], d
    return [str(request.getfixturevalue("go_consume_binary"))], EX / "go"


class Consumer:
    """A consumer example as a child process, stdout/stderr in files,
    stopped by PID at teardown (consumers fixture)."""

    def __init__(self, cmd, cwd, tmp_path, **env):
        self.out = tmp_path / "consume.out"
        self.err = tmp_path / "consume.err"
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen(cmd, env=clean_env(**env), stdout=o, stderr=e,
                                         stdin=subprocess.DEVNULL, cwd=str(cwd))

    def lines(self):
        return self.out.read_text().splitlines()

    def output(self):
        return f"stdout:\n{self.out.read_text()}\nstderr:\n{self.err.read_text()}"

    def wait_exit(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("consumer still running;\n" + self.output())

    def stop(self):
        pgtest.stop_process(self.proc, signal.SIGTERM, timeout=5)


@pytest.fixture
def consumers(tmp_path, consumer_cmd):
    made = []

    def make(gw, **env):
        d = tmp_path / f"consume{len(made) + 1}"
        d.mkdir()
        settings = dict(REDIS_URL=gw.redis.url, PUSHGATE_PREFIX=gw.prefix, GROUP="backend",
                        CONSUMER="worker-1", CLAIM_IDLE_MS=60000, MAX_EVENTS=0, TIMEOUT=60)
        settings.update(env)
        c = Consumer(*consumer_cmd, d, **settings)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def group_names(rds, stream):
    # XGROUP CREATE ... MKSTREAM makes the stream and the group at once
    return [g["name"] for g in rds.xinfo_groups(stream)] if rds.exists(stream) else []


def test_consume_prints_a_clients_events_in_order_and_acknowledges_them(events_node,
                                                                         consumers):
    """The consumer creates its group, then a client of user 42 connects,
    subscribes, sends and closes: the consumer prints the four events in
    order with their fields, acknowledges each (nothing pending), and stops
    after MAX_EVENTS."""
    gw = events_node
    stream = gw.prefix + "events"
    con = consumers(gw, MAX_EVENTS=4)
    rds = gw.redis.client()

    async def main():
        await pgtest.async_wait_until(
            lambda: con.proc.poll() is not None or "backend" in group_names(rds, stream),
            timeout=20, msg="the consumer created its group")
        assert con.proc.poll() is None, con.output()
        c = await pgtest.ws_connect(gw, "token=" + pgtest.mint_hs256(SECRET, {"sub": "42"}))
        try:
            await c.send_json({"type": "subscribe", "channel": "news"})
            assert (await c.recv_json())["type"] == "subscribed"
            await c.send_json({"type": "send", "data": {"text": "hi", "n": [1, 2]},
                               "ref": "r1"})
            sent = await c.recv_json()
            assert sent["type"] == "sent" and sent["ref"] == "r1", sent
            # the client's own code and reason reach the event (SPEC §9)
            await asyncio.wait_for(c.ws.close(1000, "bye"), 5)
        finally:
            await c.close()
        return sent["id"]

    try:
        sent_id = pgtest.run(main(), timeout=60)
        assert con.wait_exit() == 0, con.output()
        entries = rds.xrange(stream)
        assert [f["type"] for _, f in entries] == ["connect", "subscribe", "message",
                                                   "disconnect"]
        ids = [i for i, _ in entries]
        assert ids[2] == sent_id
        conn = entries[0][1]["conn"]
        assert conn.isdigit()
        assert con.lines() == [
            f"connect user=42 conn={conn} node=ev1 id={ids[0]}",
            f"subscribe user=42 conn={conn} channel=news node=ev1 id={ids[1]}",
            f'message user=42 conn={conn} data={{"text":"hi","n":[1,2]}} node=ev1 id={ids[2]}',
            f'disconnect user=42 conn={conn} code=1000 reason="bye" node=ev1 id={ids[3]}',
        ], con.output()
        assert rds.xpending(stream, "backend")["pending"] == 0
        assert "4 event(s) handled" in con.err.read_text()
    finally:
        rds.close()


def test_consume_takes_over_what_a_dead_worker_left_unacknowledged(events_node, consumers):
    """At least once: a worker read three events and died before XACK; one of
    them was trimmed from the stream since. The example, started with
    CLAIM_IDLE_MS=0, handles the two the stream still holds and leaves
    nothing pending."""
    gw = events_node
    stream = gw.prefix + "events"
    rds = gw.redis.client()
    try:
        rds.xgroup_create(stream, "backend", id="$", mkstream=True)

        async def client():
            c = await pgtest.ws_connect(gw, "token=" + pgtest.mint_hs256(SECRET, {"sub": "42"}))
            try:
                await c.send_json({"type": "send", "data": "order 7", "ref": "r1"})
                assert (await c.recv_json())["type"] == "sent"
                assert rds.fcall(gw.fn + "disconnect", 0, "42",
                                 json.dumps({"reason": "bye now"})) == 1
                assert (await c.wait_closed())[0] == 4000
            finally:
                await c.close()

        pgtest.run(client(), timeout=30)
        pgtest.wait_until(lambda: rds.xlen(stream) == 3, msg="connect, message, disconnect")
        read = rds.xreadgroup("backend", "dead-worker", {stream: ">"}, count=10)
        (ids, _) = zip(*read[0][1])
        assert rds.xpending(stream, "backend")["pending"] == 3
        rds.xdel(stream, ids[0])   # trimmed while nobody handled it

        con = consumers(gw, CLAIM_IDLE_MS=0, MAX_EVENTS=2)
        assert con.wait_exit() == 0, con.output()
        got = con.lines()
        assert [x.split()[0] for x in got] == ["message", "disconnect"], con.output()
        conn = rds.xrange(stream)[0][1]["conn"]
        assert got[0] == f'message user=42 conn={conn} data="order 7" node=ev1 id={ids[1]}'
        assert got[1] == (f'disconnect user=42 conn={conn} code=4000 reason="bye now" '
                          f"node=ev1 id={ids[2]}")
        assert rds.xpending(stream, "backend")["pending"] == 0
    finally:
        rds.close()
