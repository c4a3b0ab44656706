"""Real processes for end-to-end tests: gateway (uvicorn), worker (arq), mock model.

Each process logs to a file; a test that fails prints the tails of those logs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

REPO = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("TOKENRELAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
API_KEY = "test-api-key"
SIGNING_KEY = "test-signing-key-not-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop within {timeout:g} s of SIGTERM:\n{self.stacks()}")
            self.kill()

    def stacks(self) -> str:
        """Where every thread of the process is now (py-spy), to see what holds it up."""
        dump = subprocess.run(
            [str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", str(self.pid)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return dump.stdout + dump.stderr

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_http(url: str, process: Process, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{process.name} not ready at {url}:\n{process.log_tail()}")


def wait_log(process: Process, needle: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in process.log_text():
            return
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"{process.name}: no {needle!r} in its log:\n{process.log_tail()}")


@dataclass
class Stack:
    """A mock model, and the environment gateways and workers of one test share."""

    tmp: Path
    mock_url: str
    prefix: str = field(default_factory=lambda: f"trtest-{uuid.uuid4().hex[:10]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENRELAY_", "OPENAI_"))}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "TOKENRELAY_REDIS_URL": REDIS_URL,
                "TOKENRELAY_KEY_PREFIX": self.prefix,
                "TOKENRELAY_API_KEYS": f"{API_KEY},second-key",
                "TOKENRELAY_SIGNING_KEY": SIGNING_KEY,
                "TOKENRELAY_UPSTREAM_MAX_RETRIES": "0",
                # stopping a test's worker ends its generations at once (the drain has its test)
                "TOKENRELAY_WORKER_DRAIN_S": "0",
                "OPENAI_API_KEY": "sk-mock-not-a-real-key",
                "OPENAI_BASE_URL": self.mock_url,
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        index = len(self.processes)
        process = Process(name, argv, env, self.tmp / f"{index:02d}-{name}.log").start()
        self.processes.append(process)
        return process

    def gateway(
        self, port: int | None = None, host: str = "127.0.0.1", **env: str
    ) -> tuple[Process, str]:
        port = port or free_port()
        process = self._spawn(
            f"gateway-{port}",
            [
                sys.executable,
                "-m",
                "tokenrelay.cli",
                "gateway",
                "--host",
                host,
                "--port",
                str(port),
            ],
            self.env(**env),
        )
        base = f"http://{host}:{port}"
        wait_http(f"{base}/healthz", process)
        return process, base

    def worker(self, **env: str) -> Process:
        process = self._spawn(
            "worker", [sys.executable, "-m", "tokenrelay.cli", "worker"], self.env(**env)
        )
        wait_log(process, "Starting worker")
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} (pid {p.popen.pid if p.popen else '-'}) ---\n{p.log_tail()}"
            for p in self.processes
        )


@contextmanager
def upstream_process(tmp: Path, name: str, *command: str) -> Iterator[tuple[Process, str]]:
    """An OpenAI-compatible test upstream run as ``python <command> --port P``: the process
    and its base URL (no ``/v1``), once it answers ``/v1/models``; stopped on exit."""
    port = free_port()
    process = Process(
        name,
        [sys.executable, *command, "--port", str(port)],
        {**os.environ, "PYTHONUNBUFFERED": "1"},
        tmp / f"{name}.log",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models", process)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def mock_model_process(tmp: Path, *options: str) -> AbstractContextManager[tuple[Process, str]]:
    """``options``: the mock model command's own (``--defaults rate=0``)."""
    return upstream_process(tmp, "mock-model", "-m", "tokenrelay.cli", "mock-model", *options)


def delete_keys(prefix: str) -> None:
    """Every key under ``prefix`` on the test Redis (a test's own: never FLUSHALL)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    finally:
        client.close()


@contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    """``stack`` for the block: its processes' logs printed if the block fails, its
    processes stopped and its keys deleted after it."""
    try:
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop_all()
        delete_keys(stack.prefix)
