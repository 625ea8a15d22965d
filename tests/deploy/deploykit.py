"""deploykit - helpers for pushgate's deployment tests.

Debian's nginx run from the project's own deploy/nginx.conf, rendered for
loopback ports in a temp directory (nothing under /etc or /run is touched),
as a child process stopped by PID; a cluster of pushgate nodes behind it.
Builds on tests/integration/pgtest.py (redis-server, Gateway, clients).
"""

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pgtest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NGINX_CONF = REPO / "deploy" / "nginx.conf"
# Debian's docker-compose (1.29): resolves and validates the compose files;
# no Docker engine runs here, so nothing is started with it
COMPOSE = shutil.which("docker-compose")
NO_COMPOSE = "docker-compose is not installed (scripts/deps.sh installs Debian's docker-compose)"
NGINX_UPSTREAM = REPO / "deploy" / "nginx-upstream.conf"


def compose(overlay, *args):
    """docker-compose with docker-compose.yml and, unless None, the overlay
    file beside it (docker-compose.sentinel.yml ...), run in the repo."""
    files = ["-f", "docker-compose.yml"] + (["-f", overlay] if overlay else [])
    return subprocess.run([COMPOSE, *files, *args], cwd=str(REPO), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def compose_config(overlay):
    """The resolved configuration (`config`) as a dict; skips the test when
    docker-compose is missing, fails when it does not resolve."""
    if COMPOSE is None:
        import pytest
        pytest.skip(NO_COMPOSE)
    import yaml  # python3-yaml: a dependency of Debian's docker-compose
    r = compose(overlay, "config")
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def nginx_bin():
    for p in ("/usr/sbin/nginx", shutil.which("nginx") or ""):
        if p and os.access(p, os.X_OK):
            return p
    raise AssertionError("nginx is not installed: run scripts/deps.sh "
                         "(it installs Debian's nginx)")


def render_upstream(ports):
    """deploy/nginx-upstream.conf with its nodeN:8080 servers replaced by
    127.0.0.1:<port>, everything else (least_conn, max_fails, keepalive) as
    shipped. Fails if the shipped file no longer has one line per node."""
    text = NGINX_UPSTREAM.read_text()
    shipped = re.findall(r"^\s*server\s+(\S+?)(?:\s|;)", text, re.M)
    assert len(shipped) == len(ports), \
        f"deploy/nginx-upstream.conf lists {shipped}, the test renders {len(ports)} nodes"
    for name, port in zip(shipped, ports):
        text, n = re.subn(rf"(^\s*server\s+){re.escape(name)}(?=[\s;])",
                          rf"\g<1>127.0.0.1:{port}", text, count=1, flags=re.M)
        assert n == 1, f"cannot render server {name}"
    return text


def render_nginx_conf(listen_port):
    """deploy/nginx.conf with its one `listen 8080;` moved to the loopback
    port, two workers (as on a 2-core box) and a modest connection limit so
    it starts under any fd limit. The proxy settings stay as shipped."""
    text = NGINX_CONF.read_text()
    text, n = re.subn(r"^(\s*)listen\s+8080;", rf"\1listen 127.0.0.1:{listen_port};",
                      text, flags=re.M)
    assert n == 1, "deploy/nginx.conf no longer has exactly one `listen 8080;`"
    text = re.sub(r"^worker_processes\s+\S+;", "worker_processes 2;", text, flags=re.M)
    text = re.sub(r"worker_connections\s+\d+;", "worker_connections 1024;", text)
    return text


class Nginx:
    """nginx -p DIR/ -c DIR/nginx.conf -e stderr -g 'daemon off;' with the
    rendered config; output in DIR/nginx.log, attached to failing tests."""

    def __init__(self, tmpdir, upstream_text):
        self.dir = Path(tmpdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.upstream_text = upstream_text
        self.port = None
        self.proc = None
        self.logfile = self.dir / "nginx.log"
        self.name = "nginx"

    def start(self):
        binary = nginx_bin()
        for attempt in range(3):
            self.port = pgtest.free_port()
            (self.dir / "nginx.conf").write_text(render_nginx_conf(self.port))
            (self.dir / "pushgate-upstream.conf").write_text(self.upstream_text)
            cmd = [binary, "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf"),
                   "-e", "stderr", "-g", "daemon off;"]
            # nginx refuses a config it cannot parse before listening: check
            # first so a broken deploy/nginx.conf fails with nginx's words.
            t = subprocess.run(cmd[:-2] + ["-t"], capture_output=True, text=True,
                               timeout=20, stdin=subprocess.DEVNULL)
            assert t.returncode == 0, f"nginx -t rejects the rendered config:\n{t.stderr}"
            with open(self.logfile, "ab") as log:
                log.write(f"### start {' '.join(cmd)}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, cwd=str(self.dir))
            pgtest.wait_until(lambda: self.proc.poll() is not None or
                              pgtest.port_listening(self.port), timeout=10,
                              msg="nginx listening")
            if self.proc.poll() is None:
                return self
            if "in use" not in pgtest.tail(self.logfile, 20):
                break
        raise AssertionError(f"nginx exited with {self.proc.returncode}:\n"
                             f"{pgtest.tail(self.logfile)}")

    def stop(self):
        # SIGQUIT would wait for open streams (1 h read timeout): TERM is a
        # fast shutdown of the master and its workers.
        if self.proc is not None:
            pgtest.stop_process(self.proc, signal.SIGTERM, timeout=10)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        return pgtest.tail(self.logfile, 100000)


def node_connections(gw):
    """pushgate_connections summed over transports, from the node's /metrics."""
    text = gw.metrics()
    return sum(pgtest.metric_value(text, "pushgate_connections", {"transport": t}) or 0
               for t in ("ws", "sse"))
