"""The system under test as separate processes, on a private ``redis-server``.

Started the way ``tests/processes.py`` starts them (``python -m tokenrelay.cli ...``), but
against a Redis of the benchmark's own on a free port, so the machine's Redis is never touched:

    with Stack(logdir) as stack:
        mock = stack.mock_model()
        gateway = stack.gateway()
        worker = stack.worker()
        ...  # gateway.port, worker.cpu_seconds(), stack.redis_connections(gateway), ...

Leaving the block stops every process and the redis-server, also on Ctrl-C; the processes
get SIGTERM should this one die without cleaning up (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import cast

import redis

REPO = Path(__file__).resolve().parents[1]
API_KEY = "bench-api-key"
SIGNING_KEY = "bench-signing-key-not-secret"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_SyncRedis = redis.Redis  # (inside `Stack`, `redis` is the redis-server process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of a process now (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it if the benchmark process dies."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _raise_fd_limit() -> None:
    """Thousands of sockets per process; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Proc:
    """One process of the stack: its pid, its port (HTTP or metrics), its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)


class Stack:
    """Redis, the mock model, gateways and workers of one benchmark run."""

    def __init__(self, logdir: Path, *, env: dict[str, str] | None = None) -> None:
        self.logdir = logdir
        self.extra_env = env or {}
        self.processes: list[Proc] = []
        self._redis: Proc | None = None
        self._mock: Proc | None = None
        self._redis_dir: str | None = None
        self._observer: _SyncRedis | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        shutil.rmtree(self.logdir, ignore_errors=True)
        self.logdir.mkdir(parents=True)
        _raise_fd_limit()
        try:
            self._start_redis()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.close()
        for proc in reversed(self.processes):
            proc.stop()
        if self._redis_dir is not None:
            shutil.rmtree(self._redis_dir, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str], port: int, env: dict[str, str]) -> Proc:
        log = self.logdir / f"{len(self.processes):02d}-{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
                preexec_fn=_die_with_parent,
            )
        proc = Proc(name, popen, log, port)
        self.processes.append(proc)
        return proc

    # --- the processes -----------------------------------------------------------------------

    @property
    def redis(self) -> Proc:
        assert self._redis is not None, "the stack is not entered"
        return self._redis

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def _start_redis(self) -> None:
        self._redis_dir = tempfile.mkdtemp(prefix="tokenrelay-bench-redis-")
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", self._redis_dir]
        self._redis = self._spawn("redis", argv, port, dict(os.environ))
        client = redis.Redis.from_url(self.redis_url, socket_timeout=1)
        try:
            _wait(lambda: bool(client.ping()), self.redis, "PING")
        finally:
            client.close()
        # One connection kept for observing, so that it still works when a system under test
        # has taken every client Redis allows (``maxclients``).
        self._observer = redis.Redis.from_url(
            self.redis_url, socket_timeout=10, single_connection_client=True
        )
        self._observer.ping()

    @property
    def observer(self) -> _SyncRedis:
        """The stack's own Redis connection, opened at start (not thread-safe: one at a time)."""
        assert self._observer is not None, "the stack is not entered"
        return self._observer

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of gateways and workers (as ``tests/processes.py`` sets it)."""
        assert self._mock is not None, "start the mock model first"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "OPENAI_"))}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "TOKENRELAY_REDIS_URL": self.redis_url,
                "TOKENRELAY_KEY_PREFIX": "bench",
                "TOKENRELAY_API_KEYS": API_KEY,
                "TOKENRELAY_SIGNING_KEY": SIGNING_KEY,
                "TOKENRELAY_WORKER_DRAIN_S": "0",  # the end of a run stops workers at once
                # the load is one client's: no per-key quotas
                "TOKENRELAY_CREATES_PER_MINUTE": "0",
                "TOKENRELAY_MAX_ACTIVE_GENERATIONS": "0",
                "TOKENRELAY_MAX_READERS_PER_ADDRESS": "0",  # 10,000 readers from one address
                "OPENAI_API_KEY": "x",
                "OPENAI_BASE_URL": f"{self._mock.url}/v1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def mock_model(self) -> Proc:
        port = free_port()
        argv = [sys.executable, "-m", "tokenrelay.cli", "mock-model", "--port", str(port)]
        mock = self._spawn("mock-model", argv, port, {**os.environ, "PYTHONUNBUFFERED": "1"})
        _wait_http(f"{mock.url}/v1/models", mock)
        self._mock = mock
        return mock

    def gateway(self, **env: str) -> Proc:
        port = free_port()
        argv = [sys.executable, "-m", "tokenrelay.cli", "gateway", "--port", str(port)]
        proc = self._spawn(f"gateway-{port}", argv, port, self.env(**env))
        _wait_http(f"{proc.url}/healthz", proc)
        return proc

    def naive_gateway(self, **env: str) -> Proc:
        """The naive baseline (``bench/naive_gateway.py``) under uvicorn, with a gateway's env."""
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "bench.naive_gateway:app", "--port", str(port)]
        argv += ["--no-access-log", "--log-level", "warning"]
        proc = self._spawn(f"naive-gateway-{port}", argv, port, self.env(**env))
        _wait_http(f"{proc.url}/healthz", proc)
        return proc

    def worker(self, **env: str) -> Proc:
        """A worker; its ``port`` serves its Prometheus metrics."""
        port = free_port()
        argv = [sys.executable, "-m", "tokenrelay.cli", "worker"]
        proc = self._spawn(
            f"worker-{len(self.processes)}",
            argv,
            port,
            self.env(TOKENRELAY_WORKER_METRICS_PORT=str(port), **env),
        )
        _wait(lambda: "Starting worker" in proc.log.read_text(errors="replace"), proc, "start")
        _wait_http(f"{proc.url}/metrics", proc)
        return proc

    # --- observations ------------------------------------------------------------------------

    def redis_clients(self) -> int:
        """Clients connected to Redis (``CLIENT LIST``), not counting this question."""
        return len(cast(list[dict[str, str]], self.observer.client_list())) - 1

    def redis_client_names(self) -> list[str]:
        """The ``CLIENT SETNAME`` of every client connected to Redis (empty if unnamed)."""
        clients = cast(list[dict[str, str]], self.observer.client_list())
        return [entry.get("name", "") for entry in clients]

    def redis_named_connections(self, proc: Proc, role: str = "gateway") -> int:
        """Connections named ``tokenrelay-<role>...:<pid>`` in ``CLIENT LIST`` (by ``proc``)."""
        prefix, suffix = f"tokenrelay-{role}", f":{proc.pid}"
        names = self.redis_client_names()
        return sum(1 for name in names if name.startswith(prefix) and name.endswith(suffix))

    def redis_connections(self, proc: Proc) -> int:
        """Established TCP connections from ``proc`` to our Redis."""
        fd_dir = Path(f"/proc/{proc.pid}/fd")
        inodes = set()
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == self.redis.port and fields[3] == "01" and fields[9] in inodes:
                count += 1
        return count


def _wait(ready: Callable[[], bool], proc: Proc, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name}: no {what} within {timeout:g} s:\n{proc.log_tail()}")


def _wait_http(url: str, proc: Proc) -> None:
    def ready() -> bool:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status < 500)

    _wait(ready, proc, f"answer at {url}")
