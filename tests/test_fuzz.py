"""The whole HTTP API fuzzed from its own OpenAPI schema (schemathesis) against a real gateway:
no 5xx, every answer's status, content type, headers and body as the schema declares, the
Allow header of a 405 complete. Once with an API key (the public API), once with the admin
token (the admin API).

``positive_data_acceptance`` is left out: a request valid by the schema may still be refused
for what it means (an offset past the end of a live stream is 400 by design, README
"Decisions"). The long run is the same command without ``--seed`` and with more examples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import API_KEY, Stack, mock_model_process

ADMIN_TOKEN = "test-admin-token-fuzz"


@pytest.fixture(scope="module")
def mock_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A mock model of this module's: answers at full speed unless a model name says
    otherwise, so that each valid request that waits for a whole answer is quick."""
    with mock_model_process(tmp_path_factory.mktemp("mock"), "--defaults", "rate=0") as (_, url):
        yield url


STACK_ENV = {"TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("credential", [API_KEY, ADMIN_TOKEN], ids=["api-key", "admin"])
def test_the_api_keeps_its_schema_under_fuzzing(
    shared_stack: tuple[Stack, str], credential: str, tmp_path: Path
) -> None:
    _, base = shared_stack
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis is not None
    report = tmp_path / "junit.xml"
    done = subprocess.run(
        [
            schemathesis, "run", f"{base}/openapi.json",
            "--exclude-checks", "positive_data_acceptance",
            "--max-examples", "40", "--seed", "20261126",
            "--header", f"Authorization: Bearer {credential}",
            "--request-timeout", "10",
            "--report", "junit", "--report-junit-path", str(report),
            "--no-color",
        ],
        capture_output=True, text=True, timeout=240,
        cwd=tmp_path,  # where it keeps its cache (.schemathesis/)
    )  # fmt: skip
    summary = done.stdout[done.stdout.find("SUMMARY") :]
    assert done.returncode == 0, done.stdout[-6000:]
    assert "Tested: 28" in summary  # every operation of the schema
    counts = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counts is not None, summary
    generated, passed = int(counts[1]), int(counts[2])
    assert generated == passed > 300, summary  # every generated case passed every check
    junit = report.read_text()  # 28 operations and the stateful phase, none failed
    assert 'errors="0" failures="0"' in junit and junit.count("<testcase") == 29
