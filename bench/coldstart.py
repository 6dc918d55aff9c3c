"""Cold start per function: import plus init of each handler in a fresh process, against boto3 alone.

For every function of template.yaml (functions/<name>/app.py), a fresh ``python -S`` process on a
Lambda-like copy of the deployment (a temporary directory: /var/task with the function's app.py,
/opt/python with the layer's packages as ``sam build`` installed them plus fapiao_hub from the
source tree):

- **handler**: puts the function's directory and the layer first on sys.path, imports ``app`` and
  calls the runtime factories the handler uses on its first request (``runtime.intake()``,
  ``runtime.dispatcher()``, ... and the hub configuration), which build the boto3 session, clients
  and resources;
- **baseline**: imports boto3 (the layer's) and creates a client for each AWS service that
  function needs.

Both time themselves from the first line of their script to the end (``import + init``); the
interpreter's own start-up, the same for both, is reported apart (``process``, the parent's wall
clock from spawn to exit). Runs alternate handler/baseline, ``BENCH_COLD_RUNS`` (default 7) each;
the median is reported. Side figures, 3 runs each: the handler without Powertools' Tracer, and
both without any .pyc file (as the layer is built today). The environment is a Lambda's
(``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_FUNCTION_NAME``: Powertools' Tracer is on, as with ``Tracing:
Active``), the template's variables with dummy values, fake credentials and an endpoint on
127.0.0.1:9, so nothing touches the network (clients connect lazily).

``-X importtime`` (3 extra runs per handler) attributes the import time to packages and modules.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LAYER_SOURCE = ROOT / "layers" / "hub" / "python"
# The layer's third-party packages as `sam build` installs them for Lambda (manylinux wheels from
# layers/hub/requirements.txt). The development virtualenv is no stand-in: it also holds what
# aws-sam-cli and moto bring (awscrt, pyOpenSSL, cryptography), which botocore imports when present.
BUILT_LAYER = ROOT / ".aws-sam" / "build" / "HubLayer" / "python"

# What each handler builds on its first request, and the AWS services it needs.
FUNCTIONS: dict[str, dict[str, Any]] = {
    "intake": {
        "factories": ["intake", "file_store", "hub_config", "rule_policy"],
        "clients": ["dynamodb", "sqs", "s3"],
    },
    "dispatch": {"factories": ["dispatcher", "hub_config"], "clients": ["dynamodb", "sqs", "s3", "events"]},
    "callback": {"factories": ["callback_receiver", "hub_config"], "clients": ["dynamodb", "sqs", "s3", "events"]},
    "poller": {"factories": ["poller"], "clients": ["dynamodb", "sqs"]},
    "notifier": {"factories": ["notifier", "hub_config"], "clients": ["dynamodb", "sqs"]},
    # Static files only: no factory, no AWS client (its baseline is boto3's import alone).
    "console": {"factories": [], "clients": []},
    "reconciliation": {"factories": ["reconciler", "hub_config"], "clients": ["dynamodb", "s3"]},
    # The operations desk: a summary, a list or a read (an action builds the operations use case on first use).
    "ops": {
        "factories": ["intake", "application_store", "hub_config", "sqs_client"],
        "clients": ["dynamodb", "sqs", "s3"],
    },
}

HANDLER_SCRIPT = """
import time
_t0 = time.perf_counter()
import json, sys
sys.path[:0] = [{task!r}, *{packages!r}]
import app
_t1 = time.perf_counter()
_factories = {factories!r}
if _factories:  # a function without factories (the console) never loads the runtime
    from fapiao_hub import runtime
    for _name in _factories:
        getattr(runtime, _name)()
_t2 = time.perf_counter()
print(json.dumps({{"import_s": _t1 - _t0, "init_s": _t2 - _t1, "total_s": _t2 - _t0,
                  "modules": len(sys.modules)}}))
"""

BASELINE_SCRIPT = """
import time
_t0 = time.perf_counter()
import json, sys
sys.path[:0] = {packages!r}
import boto3
_t1 = time.perf_counter()
_session = boto3.session.Session()
_clients = [_session.client(_name) for _name in {clients!r}]
_t2 = time.perf_counter()
print(json.dumps({{"import_s": _t1 - _t0, "init_s": _t2 - _t1, "total_s": _t2 - _t0,
                  "modules": len(sys.modules)}}))
"""


@dataclass(frozen=True)
class Tree:
    """A Lambda-like file tree: /var/task per function (app.py) and /opt/python (the layer)."""

    root: Path
    compiled: bool

    def task(self, function: str) -> Path:
        return self.root / "task" / function

    @property
    def packages(self) -> list[str]:
        return [str(self.root / "opt" / "python")]


def build_trees(workdir: Path) -> tuple[dict[str, Tree], str]:
    """Two copies of the deployment: without .pyc files (as the layer's Makefile builds it:
    ``--no-compile``, every __pycache__ removed; /opt is read-only in Lambda, so every cold start
    compiles what it imports) and with them (``compileall --invalidation-mode unchecked-hash``)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    plain = workdir / "no-pyc"
    if BUILT_LAYER.is_dir():
        shutil.copytree(BUILT_LAYER, plain / "opt" / "python", ignore=ignore, symlinks=True)
        packages = "the built layer's packages (.aws-sam/build/HubLayer/python), python -S"
    else:
        (plain / "opt" / "python").mkdir(parents=True)
        packages = "the development virtualenv's packages (no built layer: run make sam-build)"
    shutil.rmtree(plain / "opt" / "python" / "fapiao_hub", ignore_errors=True)
    shutil.copytree(LAYER_SOURCE / "fapiao_hub", plain / "opt" / "python" / "fapiao_hub", ignore=ignore)
    for function in FUNCTIONS:
        (plain / "task" / function).mkdir(parents=True)
        shutil.copy2(ROOT / "functions" / function / "app.py", plain / "task" / function / "app.py")
    compiled = workdir / "pyc"
    shutil.copytree(plain, compiled, symlinks=True)
    subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(compiled)],
        check=False, capture_output=True,
    )  # fmt: skip
    return {"no_pyc": Tree(plain, False), "pyc": Tree(compiled, True)}, packages


def _extra_paths() -> list[str]:
    if BUILT_LAYER.is_dir():
        return []
    import site

    return site.getsitepackages()


def lambda_environment(function: str) -> dict[str, str]:
    """A Lambda-like environment with the template's variables (dummy values), offline."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    return {
        **keep,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "LAMBDA_TASK_ROOT": f"/var/task/{function}",
        "AWS_LAMBDA_FUNCTION_NAME": f"fapiao-hub-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "POWERTOOLS_SERVICE_NAME": "fapiao-hub",
        "POWERTOOLS_METRICS_NAMESPACE": "FapiaoHub",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "STAGE": "dev",
        "APPLICATIONS_TABLE": "applications",
        "INVOICES_TABLE": "invoices",
        "DISPATCH_QUEUE_URL": "http://127.0.0.1:9/123456789012/dispatch",
        "FILES_BUCKET": "files",
        "EVENT_BUS_NAME": "fapiao-hub-dev",
        "HUB_CONFIG_FILE": str(ROOT / "local" / "hub-config.json"),
        "STRICT_TAX_NUMBERS": "false",
        "NOTIFY_QUEUE_URL": "http://127.0.0.1:9/123456789012/notify",
        "NOTIFY_DLQ_URL": "http://127.0.0.1:9/123456789012/notify-dlq",
    }


def _script(kind: str, function: str, tree: Tree) -> str:
    spec = FUNCTIONS[function]
    packages = [*tree.packages, *_extra_paths()]
    if kind == "handler":
        return HANDLER_SCRIPT.format(task=str(tree.task(function)), packages=packages, factories=spec["factories"])
    return BASELINE_SCRIPT.format(clients=spec["clients"], packages=packages)


def _python() -> list[str]:
    # -S: no site-packages of the development virtualenv; the script puts the layer's on sys.path.
    return [sys.executable, "-S"] if BUILT_LAYER.is_dir() else [sys.executable]


def _run(kind: str, function: str, tree: Tree, extra_env: dict[str, str] | None = None) -> dict[str, float]:
    env = {**lambda_environment(function), **(extra_env or {})}
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [*_python(), "-c", _script(kind, function, tree)], env=env, capture_output=True, text=True, cwd="/"
    )
    process_s = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {function} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = process_s
    return result


def importtime(function: str, tree: Tree, kind: str = "handler", repeats: int = 3) -> dict[str, Any]:
    """``-X importtime``: self time by top-level package, and the cumulative time of fapiao_hub's
    modules and of watched third-party ones (each the median of ``repeats`` runs)."""
    by_package_runs: list[dict[str, float]] = []
    cumulative_runs: list[dict[str, float]] = []
    for _ in range(repeats):
        done = subprocess.run(  # noqa: S603
            [*_python(), "-X", "importtime", "-c", _script(kind, function, tree)],
            env=lambda_environment(function), capture_output=True, text=True, cwd="/",
        )  # fmt: skip
        by_package: dict[str, float] = {}
        cumulative: dict[str, float] = {}
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            self_us, cumulative_us, name = (part.strip() for part in line.replace("import time:", "", 1).split("|", 2))
            if not self_us.isdigit():
                continue
            package = name.split(".")[0]
            by_package[package] = by_package.get(package, 0.0) + int(self_us) / 1e6
            if name.startswith(("fapiao_hub", "app")) or name in _WATCHED:
                cumulative[name] = int(cumulative_us) / 1e6
        by_package_runs.append(by_package)
        cumulative_runs.append(cumulative)
    by_package = _median_dicts(by_package_runs)
    cumulative = _median_dicts(cumulative_runs)
    return {
        "self_by_package_s": dict(sorted(by_package.items(), key=lambda kv: -kv[1])[:14]),
        "cumulative_s": dict(sorted(cumulative.items(), key=lambda kv: -kv[1])[:20]),
        "total_self_s": sum(by_package.values()),
    }


def _median_dicts(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for run in runs for k in run}
    return {k: statistics.median(run.get(k, 0.0) for run in runs) for k in keys}


# Third-party modules whose cumulative import time is shown beside fapiao_hub's own.
_WATCHED = {
    "boto3", "requests", "pydantic", "pydantic_settings", "aws_lambda_powertools", "aws_xray_sdk",
    "aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.batch", "yaml", "stdnum",
    "aws_lambda_powertools.tracing", "aws_lambda_powertools.metrics", "aws_lambda_powertools.logging",
}  # fmt: skip

KINDS = {
    # name: (script kind, tree, extra environment, main figure?)
    "handler": ("handler", "pyc", {}, True),
    "baseline": ("baseline", "pyc", {}, True),
    "handler_no_tracer": ("handler", "pyc", {"POWERTOOLS_TRACE_DISABLED": "true"}, False),
    "handler_no_pyc": ("handler", "no_pyc", {}, False),
    "baseline_no_pyc": ("baseline", "no_pyc", {}, False),
}
# The side figures (without Tracer, without .pyc) take fewer runs: they explain, the target is on the main ones.
SIDE_RUNS = 3


def measure(runs: int | None = None, functions: list[str] | None = None) -> dict[str, Any]:
    runs = runs or int(os.environ.get("BENCH_COLD_RUNS", "7"))
    side_runs = min(runs, SIDE_RUNS)
    with tempfile.TemporaryDirectory(prefix="fapiao-cold-") as workdir:
        trees, packages = build_trees(Path(workdir))
        out: dict[str, Any] = {"runs": runs, "side_runs": side_runs, "packages": packages, "functions": {}}
        for function in functions or list(FUNCTIONS):
            samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
            for kind, tree, extra, _ in KINDS.values():  # warm the page cache: not counted
                _run(kind, function, trees[tree], extra)
            for i in range(runs):  # interleaved, so drift affects every kind alike
                for name, (kind, tree, extra, main) in KINDS.items():
                    if main or i < side_runs:
                        samples[name].append(_run(kind, function, trees[tree], extra))
            summary: dict[str, Any] = {
                "clients": FUNCTIONS[function]["clients"],
                "factories": FUNCTIONS[function]["factories"],
            }
            for name, values in samples.items():
                summary[name] = {
                    key: statistics.median(v[key] for v in values)
                    for key in ("import_s", "init_s", "total_s", "process_s", "modules")
                }
            base = summary["baseline"]["total_s"]
            summary["ratio"] = summary["handler"]["total_s"] / base
            summary["ratio_process"] = summary["handler"]["process_s"] / summary["baseline"]["process_s"]
            summary["ratio_no_tracer"] = summary["handler_no_tracer"]["total_s"] / base
            summary["ratio_no_pyc"] = summary["handler_no_pyc"]["total_s"] / summary["baseline_no_pyc"]["total_s"]
            summary["importtime"] = importtime(function, trees["pyc"])
            out["functions"][function] = summary
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(measure(args.runs), indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
