"""Redis beyond one node, started by the tests on free ports: a Redis Cluster of three masters,
and a master with a replica watched by Redis Sentinel."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.processes import Process, free_port


def cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    )
    return done.stdout.strip()


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10,000) is free too."""
    while True:
        port = free_port()
        if port <= 55535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def _server(tmp: Path, name: str, *args: str) -> tuple[Process, int]:
    port = _cluster_port() if "--cluster-enabled" in args else free_port()
    directory = tmp / name
    directory.mkdir()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    argv += ["--save", "", "--appendonly", "no", *args]
    process = Process(name, argv, {}, directory / "log").start()
    deadline = time.monotonic() + 10
    while cli(port, "ping") != "PONG":
        assert time.monotonic() < deadline, process.log_tail()
        time.sleep(0.05)
    return process, port


@dataclass
class Cluster:
    nodes: list[tuple[Process, int]]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for _, port in self.nodes)


@contextmanager
def cluster(tmp: Path, masters: int = 3) -> Iterator[Cluster]:
    nodes: list[tuple[Process, int]] = []
    try:
        for i in range(masters):
            nodes.append(
                _server(tmp, f"cluster-{i}", "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
            )  # fmt: skip
        addresses = [f"127.0.0.1:{port}" for _, port in nodes]
        done = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 15
        while any("cluster_state:ok" not in cli(port, "cluster", "info") for _, port in nodes):
            assert time.monotonic() < deadline, "the cluster never became ok"
            time.sleep(0.1)
        yield Cluster(nodes)
    finally:
        for process, _ in nodes:
            process.kill()


@dataclass
class Sentinel:
    master: tuple[Process, int]
    replica: tuple[Process, int]
    sentinel: tuple[Process, int]
    service: str = "tokenrelay"

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel[1]}/{self.service}/0"

    def master_port(self) -> int:
        answer = cli(self.sentinel[1], "sentinel", "get-master-addr-by-name", self.service)
        return int(answer.split()[1])


@contextmanager
def sentinel(tmp: Path) -> Iterator[Sentinel]:
    """A master, one replica, and one Sentinel (quorum 1) that fails over within ~2 s."""
    started: list[Process] = []
    try:
        master = _server(tmp, "master")
        started.append(master[0])
        replica = _server(tmp, "replica", "--replicaof", "127.0.0.1", str(master[1]))
        started.append(replica[0])
        deadline = time.monotonic() + 10
        while "master_link_status:up" not in cli(replica[1], "info", "replication"):
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
        port = free_port()
        config = tmp / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor tokenrelay 127.0.0.1 {master[1]} 1\n"
            "sentinel down-after-milliseconds tokenrelay 1000\n"
            "sentinel failover-timeout tokenrelay 5000\n"
        )
        process = Process(
            "sentinel", ["redis-server", str(config), "--sentinel"], {}, tmp / "sentinel.log"
        ).start()
        started.append(process)
        watched = Sentinel(master, replica, (process, port))
        deadline = time.monotonic() + 10
        while cli(port, "sentinel", "replicas", "tokenrelay").count("ip") < 1:
            assert time.monotonic() < deadline, process.log_tail()
            time.sleep(0.1)
        yield watched
    finally:
        for started_process in started:
            started_process.kill()
