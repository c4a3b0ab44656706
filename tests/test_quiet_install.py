"""``make dev`` installs quietly (issue 16: pip's chatter and setuptools' "Editable
installation" warning block, printed before the banner, read like an error).

The Makefile's own venv recipe runs here with a stand-in Python whose venv's pip prints what
the real one does, so no network and no real install: silent when the install succeeds, the
whole output and a failing exit when it does not. Then ``scripts/quietly`` itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.processes import REPO

QUIETLY = REPO / "scripts" / "quietly"
PIP_CHATTER = "Obtaining file:///work/main\nSuccessfully installed tokenrelay-0.1.0\n"
EDITABLE_WARNING = "!!\n  ****  Editable installation  ****\n!!\n"


def fake_python(tmp: Path, *, pip_exit: int) -> Path:
    """A ``python`` whose ``-m venv DIR`` makes a ``DIR/bin/pip`` that chatters like pip on
    stdout and warns like setuptools on stderr, then exits ``pip_exit``."""
    pip = (
        "#!/bin/sh\n"
        f"printf '%s' '{PIP_CHATTER}'\n"
        f"printf '%s' '{EDITABLE_WARNING}' >&2\n"
        f'case "$*" in *-e*) exit {pip_exit};; esac\n'
    )
    python = tmp / "python"
    python.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "-m venv" ] || exit 64\n'
        'mkdir -p "$3/bin"\n'
        f"cat > \"$3/bin/pip\" <<'PIP'\n{pip}PIP\n"
        'chmod +x "$3/bin/pip"\n'
    )
    python.chmod(0o755)
    return python


def make_venv(tmp: Path, python: Path) -> subprocess.CompletedProcess[str]:
    """The Makefile's ``$(BIN)/tokenrelay`` recipe, its venv in ``tmp``, run by ``python``."""
    venv = tmp / "venv"
    # not a sub-make's environment (under `make test`), which would add "Entering directory"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(
        ["make", f"VENV={venv}", f"PYTHON={python}", f"{venv}/bin/tokenrelay"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_install_of_make_dev_prints_nothing_when_it_succeeds(tmp_path: Path) -> None:
    done = make_venv(tmp_path, fake_python(tmp_path, pip_exit=0))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "venv" / "bin" / "tokenrelay").exists()


def test_a_failed_install_shows_everything_pip_said_and_fails(tmp_path: Path) -> None:
    done = make_venv(tmp_path, fake_python(tmp_path, pip_exit=1))
    assert done.returncode != 0
    assert done.stdout == ""
    assert PIP_CHATTER + EDITABLE_WARNING in done.stderr
    assert f"failed (exit status 1): {tmp_path}/venv/bin/pip install -e .[dev]" in done.stderr
    assert not (tmp_path / "venv" / "bin" / "tokenrelay").exists()  # the next run retries


def quietly(tmp: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QUIETLY, "sh", "-c", script],
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_quietly_is_silent_on_success_and_keeps_no_log(tmp_path: Path) -> None:
    done = quietly(tmp_path, "echo chatter; echo warning >&2")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert list(tmp_path.iterdir()) == []


def test_quietly_shows_why_a_command_failed_with_its_status(tmp_path: Path) -> None:
    done = quietly(tmp_path, "echo resolving; echo 'ERROR: no such package' >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr == (
        "resolving\nERROR: no such package\n"
        "failed (exit status 3): sh -c echo resolving; echo 'ERROR: no such package' >&2; exit 3\n"
    )
    assert list(tmp_path.iterdir()) == []
