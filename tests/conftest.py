"""Fixtures shared by every tier."""

from __future__ import annotations

import pytest

REGION = "ap-east-1"


@pytest.fixture
def aws_env(monkeypatch) -> None:
    """Fake credentials and region; nothing from a developer's AWS setup can redirect a test."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "FapiaoHubTest")
