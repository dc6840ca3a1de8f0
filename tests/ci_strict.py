"""Under ``CI=true`` a skipped test fails: CI must never pass because a tool was missing.

Loaded by ``tests/conftest.py`` (``pytest_plugins``). A skip there says why, in its message; in
CI that message becomes the failure. The one exception is a test marked ``needs_cuda``: a GPU is
hardware a CPU machine cannot install, and such a test runs where one is lent
(``benchmarks/gpu_capacity.py`` runs it); its skip stays a skip.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def strict() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    hardware = item.get_closest_marker("needs_cuda") is not None
    if strict() and report.skipped and not hasattr(report, "wasxfail") and not hardware:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which does not allow skips: {reason}"
