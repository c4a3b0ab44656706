"""Where a process's CPU goes: py-spy samples of a running process, summed into top-N tables.

    python -m bench.profile record <pid> <seconds> <out.raw>   # py-spy record, collapsed stacks
    python -m bench.profile top <out.raw> [--top 25]           # the tables for bench/README.md

``bench.run <scenario> --profile`` records every gateway and worker of a run this way during
its measured window and prints the same tables. py-spy samples without pausing the process
(``--nonblocking``) and, by default, only when its thread is running Python or a C call made
from it; the samples of a thread blocked in the event loop's ``epoll_wait`` are left out.

The tables group each sample by where it was spent:

- **self**: the innermost frame (``function (file)``): what the CPU was doing;
- **by layer**: the innermost frame that belongs to a known layer (tokenrelay's own code,
  redis-py, the openai SDK, httpx2, aiohttp, uvicorn, asyncio, the stdlib's json), so
  that a sample in ``str.join`` called by redis-py counts as redis-py;
- **inclusive**: every function on the stack, once per sample: the share a call costs with
  everything it calls.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")

LAYERS: tuple[tuple[str, str], ...] = (
    # (what a file path starts with, the layer's name): the first that matches wins
    ("producer/", "tokenrelay worker"),
    ("gateway/", "tokenrelay gateway"),
    ("shared/", "tokenrelay shared"),
    ("redis/", "redis-py"),
    ("openai/", "openai SDK"),
    ("httpx2/", "httpx2"),
    ("httpcore", "httpx2"),
    ("aiohttp/", "aiohttp"),
    ("uvicorn/", "uvicorn"),
    ("starlette/", "starlette"),
    ("fastapi/", "fastapi"),
    ("arq/", "arq"),
    ("prometheus_client/", "prometheus_client"),
    ("asyncio/", "asyncio"),
    ("uvloop/", "uvloop"),
    ("json/", "json (stdlib)"),
)


@dataclass
class Profile:
    samples: int
    self_time: Counter[str]
    inclusive: Counter[str]
    layers: Counter[str]

    def share(self, count: int) -> str:
        return f"{100 * count / self.samples:5.1f} %" if self.samples else "-"


def _frame_name(frame: str) -> tuple[str, str]:
    """``(function (file), file)`` of a py-spy frame ``function (file:line)``."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    file = match["file"]
    return f"{match['function']} ({file})", file


def _layer(file: str) -> str | None:
    for prefix, layer in LAYERS:
        if file.startswith(prefix) or f"/{prefix}" in file:
            return layer
    return None


def read(path: Path) -> Profile:
    """The collapsed stacks of ``py-spy record --format raw``, one ``a;b;c count`` a line."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(frame) for frame in stack.split(";")]
        self_time[frames[-1][0]] += count
        for name in {name for name, _ in frames}:
            inclusive[name] += count
        layer = next((_layer(file) for _, file in reversed(frames) if _layer(file)), None)
        layers[layer or "other (the event loop's C code, the interpreter)"] += count
    return Profile(total, self_time, inclusive, layers)


def tables(profile: Profile, top: int = 25) -> str:
    """Markdown tables: by layer, then the top ``top`` by self and inclusive time."""
    lines = [f"{profile.samples} samples", "", "| layer | share of samples |", "| --- | --- |"]
    lines += [f"| {name} | {profile.share(n)} |" for name, n in profile.layers.most_common()]
    for title, counter in (("self", profile.self_time), ("inclusive", profile.inclusive)):
        lines += ["", f"| function ({title}) | share of samples |", "| --- | --- |"]
        lines += [
            f"| `{name.replace('|', '/')}` | {profile.share(n)} |"
            for name, n in counter.most_common(top)
        ]
    return "\n".join(lines)


def record_command(pid: int, seconds: float, out: Path, rate: int = 200) -> list[str]:
    """The py-spy command that records ``pid`` for ``seconds`` into ``out``."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [
        py_spy, "record", "--nonblocking", "--format", "raw", "--rate", str(rate),
        "--duration", str(max(1, round(seconds))), "--pid", str(pid), "--output", str(out),
    ]  # fmt: skip


def start_recording(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        record_command(pid, seconds, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    record = verbs.add_parser("record", help="py-spy record a running process")
    record.add_argument("pid", type=int)
    record.add_argument("seconds", type=float)
    record.add_argument("out", type=Path)
    show = verbs.add_parser("top", help="print the tables of a recorded profile")
    show.add_argument("raw", type=Path, nargs="+")
    show.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    if args.verb == "record":
        return subprocess.run(record_command(args.pid, args.seconds, args.out)).returncode
    for raw in args.raw:
        print(f"## {raw}\n\n{tables(read(raw), args.top)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
