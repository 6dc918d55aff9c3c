"""Fixtures for integration tests: the real local run (``python -m local.run``) as a subprocess.

Its state directory (local.json, the effective hub configuration) is a temp dir, so a developer's
own ``make run`` in .fapiao-hub/ is never touched; API and moto ports are free ports (0).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 60


@dataclass
class LocalRun:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    info: dict[str, Any]

    @property
    def api_url(self) -> str:
        return self.info["api_url"]

    @property
    def token(self) -> str:
        return self.info["token"]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, signum: int = signal.SIGINT, timeout: float = 10) -> int:
        """Send ``signum`` and wait for the exit code."""
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)


def start_local_run(tmp_path: Path, state_dir: Path | None = None, **env: str) -> LocalRun:
    """``state_dir``: another run's, to start where it stopped (by default one of its own)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    state_dir = state_dir or tmp_path / "state"
    log_path = tmp_path / "local-run.log"
    environment = {
        **os.environ,
        "FAPIAO_HUB_STATE_DIR": str(state_dir),
        "API_PORT": "0",
        "MOTO_PORT": "0",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.run"], cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    local_json = state_dir / "local.json"
    deadline = time.monotonic() + START_SECONDS
    while not local_json.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
                process.wait()
            pytest.fail(f"the local run did not start:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.1)
    info = json.loads(local_json.read_text(encoding="utf-8"))
    return LocalRun(process, state_dir, log_path, info)


def _finish(run: LocalRun) -> None:
    if run.process.poll() is None:
        run.process.terminate()
        try:
            run.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()


@pytest.fixture
def local_run_factory(tmp_path: Path) -> Iterator[Callable[..., LocalRun]]:
    """Starts local runs (keyword arguments become environment variables; ``state_dir=`` an earlier
    run's state directory, to restart it); stops them after."""
    runs: list[LocalRun] = []

    def start(state_dir: Path | None = None, **env: str) -> LocalRun:
        run = start_local_run(tmp_path / f"run{len(runs)}", state_dir, **env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        _finish(run)


@pytest.fixture
def local_run(local_run_factory: Callable[..., LocalRun]) -> LocalRun:
    """A local run with free ports and a temp state directory."""
    return local_run_factory()
