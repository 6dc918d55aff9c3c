"""local.runtime: handlers loaded by path, one process, each function with its own environment."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from local.runtime import (
    FunctionNameFilter,
    ScopedEnviron,
    apply_environments,
    function_scope,
    load_function,
    unload_functions,
)
from local.template import FunctionSpec

ENVIRONMENTS = {
    "fn-a": {"SHARED": "same", "DIFFERS": "a", "ONLY_A": "a-own"},
    "fn-b": {"SHARED": "same", "DIFFERS": "b"},
}


@pytest.fixture
def plan(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.setenv("ONLY_A", "from-the-developer-shell")
    plan = apply_environments(ENVIRONMENTS)
    try:
        yield plan
    finally:
        plan.restore()
        unload_functions()


def test_shared_variables_are_set_once_and_the_rest_are_overlays(plan) -> None:
    assert plan.shared == {"SHARED": "same"}
    assert plan.overlays == {"fn-a": {"DIFFERS": "a", "ONLY_A": "a-own"}, "fn-b": {"DIFFERS": "b"}}
    assert isinstance(os.environ, ScopedEnviron)
    assert os.environ["SHARED"] == "same"
    # Outside any function, nobody's own variables (nor a stale shell value of them) show.
    assert "ONLY_A" not in os.environ and "DIFFERS" not in os.environ


def test_each_function_sees_exactly_its_environment(plan) -> None:
    with function_scope("fn-a", plan.overlays["fn-a"]):
        assert (os.environ["DIFFERS"], os.getenv("ONLY_A"), os.environ["SHARED"]) == ("a", "a-own", "same")
        assert {"DIFFERS", "ONLY_A", "SHARED"} <= set(os.environ)
    with function_scope("fn-b", plan.overlays["fn-b"]):
        assert (os.environ["DIFFERS"], os.getenv("ONLY_A")) == ("b", None)
        assert "ONLY_A" not in os.environ.copy()


def test_concurrent_functions_do_not_see_each_other(plan) -> None:
    barrier = threading.Barrier(2)
    seen: dict[str, tuple[str | None, str | None]] = {}

    def run(name: str) -> None:
        with function_scope(name, plan.overlays[name]):
            barrier.wait(timeout=5)  # both inside their scope at once
            seen[name] = (os.getenv("DIFFERS"), os.getenv("ONLY_A"))
            barrier.wait(timeout=5)

    threads = [threading.Thread(target=run, args=(n,)) for n in ENVIRONMENTS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen == {"fn-a": ("a", "a-own"), "fn-b": ("b", None)}


def test_pydantic_settings_read_the_overlay(plan) -> None:
    class Settings(BaseSettings):
        differs: str
        shared: str

    with function_scope("fn-b", plan.overlays["fn-b"]):
        assert Settings().differs == "b"  # type: ignore[call-arg]


def test_restore_puts_the_process_environment_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLY_A", "shell")
    monkeypatch.delenv("SHARED", raising=False)
    original = os.environ
    plan = apply_environments(ENVIRONMENTS)
    plan.restore()
    assert os.environ is original
    assert os.environ["ONLY_A"] == "shell" and "SHARED" not in os.environ


def test_identical_environments_need_no_overlay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARED", raising=False)
    original = os.environ
    plan = apply_environments({"a": {"SHARED": "x"}, "b": {"SHARED": "x"}})
    try:
        assert os.environ is original  # the template's Globals make this the usual case
        assert os.environ["SHARED"] == "x"
    finally:
        plan.restore()


APP = """
import os
import helper_from_layer
IMPORTED_WITH = os.environ.get("DIFFERS")

def handler(event, context):
    return {"import": IMPORTED_WITH, "call": os.environ.get("DIFFERS"),
            "layer": helper_from_layer.VALUE, "name": context.function_name, "event": event}
"""


def test_handlers_named_app_load_side_by_side(plan, tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "functions" / name).mkdir(parents=True)
        (tmp_path / "functions" / name / "app.py").write_text(APP, encoding="utf-8")
    (tmp_path / "layers" / "x" / "python").mkdir(parents=True)
    (tmp_path / "layers" / "x" / "python" / "helper_from_layer.py").write_text("VALUE = 7\n", encoding="utf-8")

    def spec(logical_id: str, name: str, code: str) -> FunctionSpec:
        return FunctionSpec(logical_id, name, f"functions/{code}", "app.handler", "python3.13", 3, 128, ("layers/x",))

    try:
        a = load_function(
            spec("A", "fn-a", "a"), tmp_path, region="ap-east-1", account_id="1", overlay=plan.overlays["fn-a"]
        )
        b = load_function(
            spec("B", "fn-b", "b"), tmp_path, region="ap-east-1", account_id="1", overlay=plan.overlays["fn-b"]
        )
        assert a.invoke({"n": 1}) == {"import": "a", "call": "a", "layer": 7, "name": "fn-a", "event": {"n": 1}}
        assert b.invoke({}) == {"import": "b", "call": "b", "layer": 7, "name": "fn-b", "event": {}}
        assert "_fapiao_fn_A_app" in sys.modules and "_fapiao_fn_B_app" in sys.modules
        assert "app" not in sys.modules
    finally:
        sys.path.remove(str((tmp_path / "layers" / "x" / "python").resolve()))
        sys.modules.pop("helper_from_layer", None)


def test_log_records_carry_the_function_name() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with function_scope("fn-a", None):
        FunctionNameFilter().filter(record)
    assert record.function_name == "fn-a"
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    FunctionNameFilter().filter(outside)
    assert outside.function_name == "local"


def test_powertools_lines_name_the_invocation_that_logged_them(capsys: pytest.CaptureFixture[str]) -> None:
    """Two functions share the layer's Powertools logger; each line names its own function, in the
    local run's one readable format (not Powertools' JSON)."""
    from aws_lambda_powertools import Logger

    from local.runtime import LocalFunction, tag_log_handlers

    logger = Logger(service="shared-service-under-test")
    tag_log_handlers()

    def make(message: str):
        @logger.inject_lambda_context(clear_state=True)
        def handler(event, context):
            logger.info(message, extra={"n": 1})
            return context.aws_request_id

        return handler

    first = LocalFunction("fn-first", make("one"))
    second = LocalFunction("fn-second", make("two"))
    first.invoke({}), second.invoke({}), first.invoke({})
    lines = [line.split(" ", 2)[2] for line in capsys.readouterr().out.splitlines()]
    assert [line.split() for line in lines] == [
        ["INFO", "fn-first", "one", "n=1"],
        ["INFO", "fn-second", "two", "n=1"],
        ["INFO", "fn-first", "one", "n=1"],
    ]


def test_keys_one_function_appends_never_reach_another_functions_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """Locally every function shares one Powertools logger: keys are kept per thread, and an
    application's code and request number lead the line."""
    import threading

    from aws_lambda_powertools import Logger

    from fapiao_hub.domain import logkeys
    from local.runtime import LocalFunction, tag_log_handlers

    logger = Logger(service="keys-per-thread-under-test")  # a handler on this capsys stream
    tag_log_handlers()
    inside, outside = threading.Event(), threading.Event()

    @logger.inject_lambda_context(clear_state=True)
    def busy(event, context):
        logkeys.set_application("erp", "ORDER-A")
        logkeys.name_request("FHORDERA0000000000A2")  # once the application was read
        logger.set_correlation_id("ORDER-A")
        inside.set()
        outside.wait(5)
        logger.info("still on A")

    @logger.inject_lambda_context(clear_state=True)
    def other(event, context):
        logger.info("about nothing")

    thread = threading.Thread(target=LocalFunction("fn-a", busy).invoke, args=({},))
    thread.start()
    assert inside.wait(5)
    LocalFunction("fn-b", other).invoke({})
    outside.set()
    thread.join(5)
    lines = capsys.readouterr().out.splitlines()
    [nothing] = [line for line in lines if "about nothing" in line]
    assert "ORDER-A" not in nothing and "code=" not in nothing
    [on_a] = [line for line in lines if "still on A" in line]
    assert " fn-a" in on_a and "code=ORDER-A request=FHORDERA0000000000A2 still on A" in on_a
