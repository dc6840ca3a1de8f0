"""CI=true turns a skip (a missing tool) into a failure; elsewhere a skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_pytest(folder: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """pytest over ``folder`` with the CI-strict plugin and ``CI`` set to ``ci``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.ci_strict",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            str(folder),
        ],
        cwd=folder,
        env={**os.environ, "CI": ci, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_a_skip_fails_only_under_ci(tmp_path: Path, ci: str, outcome: str) -> None:
    (tmp_path / "test_tool.py").write_text(
        "import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('THE TOOL IS NOT INSTALLED')\n"
    )
    done = run_pytest(tmp_path, ci)
    assert outcome in done.stdout, done.stdout
    if ci:
        assert "THE TOOL IS NOT INSTALLED" in done.stdout and done.returncode == 1


def test_a_test_that_needs_a_gpu_may_skip_under_ci(tmp_path: Path) -> None:
    """A GPU is hardware, not a tool a CPU machine could install: its skip stays a skip."""
    (tmp_path / "test_gpu.py").write_text(
        "import pytest\n\n@pytest.mark.needs_cuda\ndef test_needs_a_gpu():\n    pytest.skip('NO CUDA')\n"
    )
    done = run_pytest(tmp_path, "true")
    assert "1 skipped" in done.stdout and done.returncode == 0, done.stdout
