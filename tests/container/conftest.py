"""The container tier (``make sam-invoke``; ``make test`` runs it after the main suite, which does
not collect this directory). Tests that need the tier are skipped unless FAPIAO_HUB_SAM_INVOKE=1
(set by ``make sam-invoke``), so a bare ``pytest`` does not start containers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.tier import MOTO_CONTAINER, NETWORK, SANDBOX_CONTAINER, Tier, exclusive

HERE = Path(__file__).resolve().parent
_SUMMARY: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FAPIAO_HUB_SAM_INVOKE") == "1":
        return
    skip = pytest.mark.skip(reason="the container tier runs through `make sam-invoke`")
    for item in items:
        if HERE in item.path.parents and "tier" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tier() -> Iterator[Tier]:
    """The running tier; SAM_INVOKE_KEEP=1 leaves moto and the sandboxes running afterwards (README)."""
    started = time.monotonic()
    keep = os.environ.get("SAM_INVOKE_KEEP") == "1"
    with exclusive():
        running = Tier()
        try:
            running.start()
            yield running
        finally:
            if keep:
                _SUMMARY.append(
                    f"kept: {MOTO_CONTAINER}, {SANDBOX_CONTAINER} on network {NETWORK} (moto {running.moto_url})"
                )
            else:
                running.stop()
            running.timings["total"] = time.monotonic() - started
            _SUMMARY.extend(
                [f"{name}: {seconds:.1f} s" for name, seconds in running.timings.items()]
                + [f"  {i.function} {i.fixture}: {i.seconds:.1f} s" for i in running.invocations]
                + [f"note: {note}" for key, note in running.notes.items() if key == "template"]
            )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARY:
        terminalreporter.write_sep("-", "sam-invoke tier timings")
        for line in _SUMMARY:
            terminalreporter.write_line(line)
