"""What this machine charges for the two things every relayed token needs, with no Python
framework in the way: a process waking up for a message, and a write to a local socket.

    python -m bench.floor            # the table for bench/README.md

Every token crosses four processes (mock model → worker → Redis → gateway → client), and
each of them, when it is not already busy, sleeps in ``epoll_wait`` and is woken by the
token's bytes. On a machine whose processes wake cheaply that costs a few microseconds; on
a virtual machine each wake-up (the timer or interrupt, the exit to the hypervisor, the
scheduler) is charged to the woken process. This measures it with the smallest program
that does it: a sender process writes 100 bytes to a socket at a fixed pace, busy-waiting
between writes so that its pace is exact; the receiver sleeps in ``epoll_wait``, reads
each message, and counts its own CPU time (``time.process_time``, user + system).
The sender counts its CPU per ``send`` the same way, less its busy wait.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import sys
import time

MESSAGE = b"x" * 100


def _pair(kind: str) -> tuple[socket.socket, socket.socket]:
    if kind == "unix":
        return socket.socketpair()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def measure(kind: str, gap_s: float, messages: int) -> tuple[float, float]:
    """(receiver CPU µs per wake-up, sender CPU µs per send) at one message per ``gap_s``."""
    sender, receiver = _pair(kind)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the sender
        receiver.close()
        os.close(read_end)
        spent = 0.0
        for _ in range(messages):
            before = time.process_time()
            sender.send(MESSAGE)
            spent += time.process_time() - before
            until = time.perf_counter() + gap_s
            while time.perf_counter() < until:
                pass
        sender.send(b"END")
        os.write(write_end, f"{spent / messages * 1e6:.2f}".encode())
        os._exit(0)
    sender.close()
    os.close(write_end)
    poller = select.epoll()
    poller.register(receiver.fileno(), select.EPOLLIN)
    wakes, started = 0, time.process_time()
    while True:
        poller.poll()
        wakes += 1
        if receiver.recv(65536).endswith(b"END"):
            break
    receiver_us = (time.process_time() - started) / wakes * 1e6
    os.waitpid(pid, 0)
    sender_us = float(os.read(read_end, 64))
    os.close(read_end)
    receiver.close()
    return receiver_us, sender_us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args(argv)
    print("| socket | one message every | receiver CPU per wake-up | sender CPU per send |")
    print("| --- | --- | --- | --- |")
    for kind in ("tcp", "unix"):
        for gap_s in (0.0001, 0.001):
            receiver_us, sender_us = measure(kind, gap_s, args.messages)
            print(
                f"| {'loopback TCP' if kind == 'tcp' else 'Unix socketpair'} "
                f"| {gap_s * 1e6:.0f} µs | {receiver_us:.1f} µs | {sender_us:.1f} µs |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
