"""``python -m bench`` (``make bench``): run every section, print a summary, write docs/benchmarks.md.

Each section runs in its own subprocess (``python -m bench.<module> --out <json>``), its output
going to a log file in a temporary directory (named when a section fails). Options:

    --sections requests,coldstart,warm,polling,reconciliation,listing,batch,throughput   (default: all)
    --doc PATH      where to write the report (default docs/benchmarks.md); --no-doc to skip
    --results PATH  the raw results, kept between runs (default bench/last-results.json): a run of
                    some sections takes the others' figures from it (the report says when each
                    section ran); --fresh ignores it

Sizes: BENCH_ORDERS (throughput, default 2000), BENCH_COLD_RUNS (default 7), BENCH_WARM_REQUESTS
(default 300), BENCH_BATCH_ORDERS (default 100), BENCH_POLL_SIZES (default "1000,100000"), BENCH_POLL_RUNS (default 5),
BENCH_RECONCILE_SIZES (default "1000,100000"), BENCH_RECONCILE_RUNS (default 3),
BENCH_THROUGHPUT_SUBMIT_SECONDS (default 360) and BENCH_THROUGHPUT_DRAIN_SECONDS (default 240) bound
the throughput run on a slow or busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cost, report
from bench.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {
    "requests": "bench.flows",
    "coldstart": "bench.coldstart",
    "warm": "bench.warm",
    "polling": "bench.polling",
    "reconciliation": "bench.reconciliation",
    "listing": "bench.listing",
    "batch": "bench.batch",
    "throughput": "bench.throughput",
}


def run_section(name: str, workdir: Path) -> dict[str, Any]:
    out = workdir / f"{name}.json"
    log = workdir / f"{name}.log"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("wb") as sink:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", SECTIONS[name], "--out", str(out)],
            cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    elapsed = time.perf_counter() - started
    load = [load_before, os.getloadavg()[0]]
    if done.returncode != 0 or not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        return {"error": f"exit status {done.returncode}; log {log}:\n{tail}", "_seconds": elapsed, "_load": load}
    result = json.loads(out.read_text(encoding="utf-8"))
    result["_seconds"] = elapsed
    result["_load"] = load
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="fapiao-hub benchmarks")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "last-results.json")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--soak", type=Path, default=ROOT / "bench" / "last-soak.json", help="make soak's tallies")
    parser.add_argument("--render-only", action="store_true", help="rewrite the doc from the kept results")
    args = parser.parse_args(argv)
    if args.render_only:
        return render_only(args)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")

    machine = machine_info()
    results: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    if not args.fresh and set(sections) != set(SECTIONS) and args.results.is_file():
        try:
            previous = json.loads(args.results.read_text(encoding="utf-8")).get("results", {})
        except ValueError:
            previous = {}
    workdir = Path(tempfile.mkdtemp(prefix="fapiao-bench-"))
    print(f"fapiao-hub benchmarks on {machine['cores']} cores ({machine['cpu']}), logs in {workdir}", flush=True)
    for name in sections:
        print(f"  {name} ...", end=" ", flush=True)
        results[name] = run_section(name, workdir)
        seconds = results[name]["_seconds"]
        print(f"{'FAILED' if 'error' in results[name] else 'done'} in {seconds:.0f} s", flush=True)
        if "error" in results[name]:
            print(results[name]["error"], file=sys.stderr)
    for name, section in previous.items():
        if name in SECTIONS and name not in results and isinstance(section, dict):
            results[name] = section  # from an earlier run: its "_ran" says when
    for name in sections:
        results[name]["_ran"] = machine["date"]
    requests = results.get("requests")
    if requests and "error" not in requests:
        results["cost"] = cost.costs(requests["flows"])
    command = "make bench" if set(sections) == set(SECTIONS) else f"python -m bench --sections {','.join(sections)}"
    if previous:
        command += " (other sections from an earlier run)"
    env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_")}
    if env:
        command = " ".join(f"{k}={v}" for k, v in sorted(env.items())) + " " + command
    results["soak"] = _soak(args.soak)
    print()
    print(report.summary(results))
    if not args.no_doc:
        args.doc.write_text(report.render(machine, results, command), encoding="utf-8")
        print(f"\nwrote {args.doc.relative_to(ROOT) if args.doc.is_relative_to(ROOT) else args.doc}")
    kept = {name: results[name] for name in SECTIONS if name in results}
    args.results.write_text(
        json.dumps({"machine": machine, "command": command, "results": kept}, indent=1, default=str)
    )
    return 1 if any("error" in r for r in results.values() if isinstance(r, dict)) else 0


def _soak(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def render_only(args: argparse.Namespace) -> int:
    """The doc again from bench/last-results.json and bench/last-soak.json (after `make soak`)."""
    kept = json.loads(args.results.read_text(encoding="utf-8"))
    results: dict[str, Any] = dict(kept["results"])
    requests = results.get("requests")
    if requests and "error" not in requests:
        results["cost"] = cost.costs(requests["flows"])
    results["soak"] = _soak(args.soak)
    command = kept.get("command") or "make bench"
    machine = kept.get("machine") or machine_info()  # an old results file may not have kept it
    args.doc.write_text(report.render(machine, results, command), encoding="utf-8")
    print(report.summary(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
