"""What docker-compose.yml describes, as local processes: Redis with an append-only file,
two gateways behind nginx (deploy/nginx/tokenrelay.conf, only its addresses changed), two
workers; plus the mock model as the upstream. Used by tests/test_topology.py and by the
chaos command (``python -m tests.chaos``)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.processes import REPO, Process, Stack, free_port, wait_http


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    assert found is not None, "nginx (Debian's nginx-light) runs the topology; .ci/run installs it"
    return found


def nginx_config(tmp: Path, gateways: list[str], listen: int) -> Path:
    """deploy/nginx/tokenrelay.conf as-is but for the addresses, in a whole nginx.conf."""
    site = (REPO / "deploy/nginx/tokenrelay.conf").read_text()
    servers = "".join(
        f"    server {address} max_fails=1 fail_timeout=2s;\n" for address in gateways
    )
    site, count = re.subn(r"    server gateway:8000[^\n]*\n", servers, site)
    assert count == 1, "deploy/nginx/tokenrelay.conf no longer names `server gateway:8000`"
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    (tmp / "site.conf").write_text(site)
    config = tmp / "nginx.conf"
    config.write_text(
        f"""daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
"""
    )
    return config


@dataclass
class RedisServer:
    """A redis-server of the test's own, persisting every write to its append-only file."""

    dir: Path
    port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
        ]  # fmt: skip
        self.process = Process("redis", argv, {}, self.dir / "redis.log").start()
        deadline = time.monotonic() + 10
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            assert time.monotonic() < deadline, self.process.log_tail()
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM: Redis finishes its append-only file and exits."""
        if self.process is not None:
            self.process.stop(timeout=10)

    def restart(self) -> float:
        """Stop, then start again from the append-only file; returns seconds it was down."""
        began = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - began

    def keys(self) -> int:
        out = subprocess.run(
            ["redis-cli", "-p", str(self.port), "dbsize"], capture_output=True, text=True
        )
        return int(out.stdout.strip())


@dataclass
class Topology:
    stack: Stack
    redis: RedisServer
    gateways: list[Process]
    workers: list[Process]
    nginx: Process
    url: str

    def logs(self) -> str:
        parts = [self.stack.logs(), f"--- nginx ---\n{self.nginx.log_tail()}"]
        if self.redis.process is not None:
            parts.append(f"--- redis ---\n{self.redis.process.log_tail()}")
        return "\n".join(parts)


@contextmanager
def topology(tmp: Path, mock_url: str, **env: str) -> Iterator[Topology]:
    """Redis (AOF) + 2 gateways + 2 workers + nginx, all stopped on leaving."""
    redis = RedisServer(tmp).start()
    stack = Stack(tmp=tmp, mock_url=mock_url, extra_env={"TOKENRELAY_REDIS_URL": redis.url, **env})
    nginx: Process | None = None
    try:
        gateways = [stack.gateway()[0] for _ in range(2)]
        workers = [stack.worker() for _ in range(2)]
        ports = [int(g.argv[-1]) for g in gateways]
        listen = free_port()
        config = nginx_config(tmp, [f"127.0.0.1:{port}" for port in ports], listen)
        nginx = Process(
            "nginx", [nginx_binary(), "-c", str(config), "-e", str(tmp / "nginx-error.log")],
            {}, tmp / "nginx.log",
        ).start()  # fmt: skip
        url = f"http://127.0.0.1:{listen}"
        wait_http(f"{url}/healthz", nginx)
        yield Topology(stack, redis, gateways, workers, nginx, url)
    finally:
        if nginx is not None and nginx.popen is not None and nginx.alive():
            nginx.popen.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                nginx.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                nginx.kill()
        stack.stop_all()
        redis.stop()


def wait_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} never became ready")
