"""docs/benchmarks.md and the printed summary, from the sections' results."""

from __future__ import annotations

from typing import Any

from bench import cost as cost_model
from bench import floors
from bench.flows import FLOW_TITLES

TARGET_REQUESTS = 1.2
TARGET_COLD = 1.3
TARGET_WARM = 1.5
FUNCTION_ORDER = ["IntakeFunction", "DispatchFunction", "CallbackFunction", "PollerFunction", "NotifierFunction"]
SHORT = {f: f.removesuffix("Function").lower() for f in FUNCTION_ORDER}


def _ok(value: float, target: float) -> str:
    return "**met**" if value <= target else "**missed**"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.995 else f"${value:.3f}"


def _missing(results: dict[str, Any], name: str) -> str | None:
    section = results.get(name)
    if section is None:
        return f"_Not run in this invocation (`python -m bench --sections {name}`)._\n"
    if "error" in section:
        return f"_The section failed:_\n\n```\n{section['error'][-2000:]}\n```\n"
    return None


def _unavailable(results: dict[str, Any], name: str, title: str) -> str | None:
    """The section's whole text when ``name`` was not run or failed (its title, then why); None when it ran."""
    missing = _missing(results, name)
    return f"{title}\n\n{missing}" if missing else None


def _ran(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The section's results when it ran without failing."""
    section = results.get(name)
    return section if section and "error" not in section else None


def _calls(requests: dict[str, int]) -> str:
    """``dynamodb:Query x2, ...`` in the order counted."""
    return ", ".join(f"{k} x{v}" for k, v in requests.items())


def _same_requests(sizes: list[dict[str, Any]]) -> bool:
    """Every size made the same requests."""
    return len({tuple(sorted(s["requests"].items())) for s in sizes}) == 1


def _figures(counts: dict[str, Any], sep: str = " ") -> str:
    """``name 1,234, other 5`` (``sep`` between a name and its figure)."""
    return ", ".join(f"{k}{sep}{v:,}" for k, v in counts.items())


# ============================================================================ requests
def flow_rows(name: str, flow: dict[str, Any]) -> tuple[list[tuple[str, str, str, int, int, str, str]], int]:
    """(function, operation, the calls, measured, floor, floor why, above-floor why) rows, and the floor."""
    needs = floors.floor(name, files=flow["files"], polls=flow["polls"])
    floor_counts = floors.by_key(needs)
    floor_why: dict[tuple[str, str], list[str]] = {}
    for need in needs:
        floor_why.setdefault((need.function, need.operation), []).append(need.why)
    measured: dict[tuple[str, str], dict[str, int]] = {}
    for call in flow["calls"]:
        labels = measured.setdefault((call["function"], f"{call['service']}:{call['operation']}"), {})
        labels[call.get("label", "")] = labels.get(call.get("label", ""), 0) + 1
    above = floors.excess(needs, flow["calls"])
    keys = sorted(
        set(measured) | set(floor_counts),
        key=lambda k: (FUNCTION_ORDER.index(k[0]) if k[0] in FUNCTION_ORDER else 99, k[1]),
    )
    rows = []
    for key in keys:
        labels = measured.get(key, {})
        calls = ", ".join(f"{label} x{n}" if n > 1 else label for label, n in labels.items())
        extra = "; ".join(
            f"{label}{f' x{n}' if n > 1 else ''}: {floors.reason(key[0], label)}"
            for label, n in above.get(key, {}).items()
        )
        rows.append(
            (key[0], key[1], calls, sum(labels.values()), floor_counts.get(key, 0),
             "; ".join(dict.fromkeys(floor_why.get(key, []))), extra)
        )  # fmt: skip
    return rows, floors.total(needs)


def requests_section(results: dict[str, Any]) -> str:
    unavailable = _unavailable(results, "requests", "## 1. AWS requests per issued invoice")
    if unavailable:
        return unavailable
    flows = results["requests"]["flows"]
    out = [
        "## 1. AWS requests per issued invoice",
        "",
        f"Target: at most {TARGET_REQUESTS}x the floor, per flow.",
        "",
        "**What is counted.** Every AWS API call made by a client built from the boto3 session of",
        "`fapiao_hub.runtime` (the session every function handler builds its clients from), counted by",
        "a botocore `before-call.*.*` hook attached right after the local run started, before any client",
        "existed; each call is attributed to the function whose invocation made it. One hook event per",
        "API call: botocore's own retries of a call would not be counted again (there were none here).",
        "**Not counted**, because it is not the hub's code: the local run's pumps (they receive and",
        "delete SQS messages as Lambda's event source mappings would, and hand Ekuaibao its",
        "applications by scanning the table), moto, the sandboxes and the benchmark's own reads. The",
        "event sources' requests are billed all the same: section 2 prices them.",
        "",
        "**How.** `bench/flows.py` runs the local run in process (`local.run.start`) and sends one",
        "order at a time through the HTTP API; a flow ends when its application is final, its files",
        "stored, its outcome event published and the sample business system's webhook has the",
        "notification, and nothing has run for 1.5 s. The scheduled poller is not left to fire on",
        "its own (empty runs belong to no flow): the flow starts it when the application is due, as the",
        "one-minute schedule would. A flow is alone in the hub, so a poller run and an SQS batch serve",
        "it alone; under load they are shared (see 'under load' below).",
        "",
        "| flow | requests | floor | ratio | target | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, flow in flows.items():
        _, floor_total = flow_rows(name, flow)
        ratio = flow["total"] / floor_total
        out.append(
            f"| {FLOW_TITLES[name]} | {flow['total']} | {floor_total} | {ratio:.2f}x | <= {TARGET_REQUESTS}x "
            f"| {_ok(ratio, TARGET_REQUESTS)} |"
        )
    out += ["", "**How the floor is derived** (`bench/floors.py`, the same rules for every flow):", ""]
    out += [_floor_rules()]
    for name, flow in flows.items():
        rows, floor_total = flow_rows(name, flow)
        ratio = flow["total"] / floor_total
        details = f"{flow['files']} invoice file(s) stored"
        if flow["polls"]:
            details += f", {flow['polls']} poll(s)"
        out += [
            "",
            f"### {FLOW_TITLES[name]}: {flow['total']} requests, floor {floor_total}, {ratio:.2f}x",
            "",
            f"`{flow['code']}` ended {flow['status']} in {flow['seconds']:.1f} s; {details}.",
            "",
            "| function | operation | the calls | measured | floor | the floor's requests | above the floor |",
            "|---|---|---|---:|---:|---|---|",
        ]
        for function, op, calls, got, need, why, above in rows:
            out.append(f"| {SHORT.get(function, function)} | {op} | {calls} | {got} | {need} | {why} | {above} |")
    out += ["", "### Why the ratios miss and what would bring them to the floor", "", _request_fixes(flows)]
    throughput = _ran(results, "throughput")
    if throughput and throughput.get("requests_per_issued"):
        ops = throughput["requests_by_operation_per_issued"]
        issued = throughput["statuses"].get("ISSUED", 0)
        blue = [f for f in ("xunlian", "ekuaibao", "kingdee", "partner") if f in flows]
        alone = sum(flows[f]["total"] for f in blue) / max(len(blue), 1)
        out += [
            "",
            "### Under load",
            "",
            f"In the throughput run (section 6) the functions made {throughput['requests_total']:,} requests for",
            f"{throughput['submitted']:,} applications, {issued:,} of them issued by the end of the window:",
            f"**{throughput['requests_total'] / max(issued, 1):.1f} per issued invoice** (an upper bound: the",
            "unfinished applications' requests are in it) and "
            f"{throughput['requests_total'] / max(throughput['submitted'], 1):.1f} per application (a lower bound);",
            f"alone, the four blue flows above average {alone:.1f}. Poller runs and their sends are shared by",
            "every application due at once; duplicate dispatch requests (section 6) add reads and lost races.",
            "",
            "| operation | per issued invoice |",
            "|---|---:|",
            *[f"| {op} | {n:.2f} |" for op, n in ops.items()],
        ]
    return "\n".join(out) + "\n"


def _floor_rules() -> str:
    doc = floors.__doc__ or ""
    rules = doc.split("the same rules for every flow):", 1)[-1].strip()
    return rules


def _request_fixes(flows: dict[str, Any]) -> str:
    return "\n".join(
        [
            "Already done (an earlier run of this report named them): intake puts without reading first",
            "(the failed condition hands back what is stored; red orders still read, they reserve before they",
            "are stored), intake no longer records `queued_at` after sending the dispatch request (a repeat",
            "of a still-RECEIVED order asks for dispatch again instead, which also recovers a lost message),",
            "invoice files are PUT first and HEAD only on a conflict, and the poller claims what it queues.",
            "",
            "What is left above the floor, and what would remove it (each change local to one function):",
            "",
            "1. **The outbox flag cleared by the notifier, not by a write of its own** (1 UpdateItem per",
            "   outcome). `Dispatcher.publish` calls `store.clear_pending_event` after each PutEvents. The",
            "   notifier's history note (`store.note`) could `REMOVE pending_event` in the same write, on the",
            "   condition that it still holds this event; until then a redelivered dispatch message publishes",
            "   it again, which the notifier de-duplicates by its idempotency key already. Not done: a business",
            "   system without a webhook has no note, so the flag would need a write there instead.",
            "2. **The notifier reads nothing** (1 GetItem + 1 BatchGetItem per outcome). `Notifier.deliver_record`",
            "   reads the application and its invoices to build the body; the invoices' file records and the",
            "   reason could travel in the outcome event's detail, which already carries the invoices. The",
            "   Ekuaibao-format write-back also needs the application's lines (the invoice items hold them).",
            "3. **Files before the invoice item** (1 UpdateItem per invoice with files). `Outcomes.issued`",
            "   records the invoice first (a result, once heard, is never lost: docs/rules.md section 6), then",
            "   stores its files and writes their records with `update_invoice`. Storing the files first would",
            "   put the records in the invoice item, at the price of a result waiting on S3.",
            "4. **Callback channels** (Ekuaibao): the push records the invoice with 'not fetched' file records",
            "   (`update_invoice`), sets `files_pending`, and sends a dispatch request that makes the",
            "   dispatcher read the application and the invoices again (GetItem, BatchGetItem), fetch, write",
            "   the records and clear `files_pending` (2 UpdateItems). A dedicated message naming the invoice",
            "   and its URLs would need neither the reads nor the flag (about 5 requests per pushed invoice).",
            "   A channel that is sent nothing (Ekuaibao's `issue` answers Accepted at once) needs no",
            "   DISPATCHING claim: RECEIVED to SUBMITTED in one write (1 UpdateItem).",
            "",
            "Changes 1-3 bring the Xunlian and red flows to their floors; with 4 the Ekuaibao flow too. The",
            "polled flows keep a little above it only if a poll finds nothing yet (a channel-side delay).",
        ]
    )


# ============================================================================ cost
def cost_section(results: dict[str, Any]) -> str:
    missing = _missing(results, "requests")
    if missing or "cost" not in results:
        return "## 2. Cost per million invoices\n\n" + (missing or "_Needs the requests section._\n")
    costs = results["cost"]
    flows = costs["flows"]
    names = list(flows)
    out = [
        "## 2. Cost per million invoices",
        "",
        f"No target; the figures answer 'what does an invoice cost to run'. Region **{costs['region']}**,",
        f"on-demand list prices, no free tier, prices as of {costs['prices_as_of']}:",
        "",
        *[f"- {name.replace('_', ' ')}: {text}" for name, text in costs["prices"].items()],
        "",
        "US$ per million invoices, each flow as measured in section 1 (alone: an upper bound, see below):",
        "",
        "| | " + " | ".join(FLOW_TITLES[n] for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    lines = list(next(iter(flows.values()))["dollars"])
    for line in lines:
        out.append(f"| {line} | " + " | ".join(_usd(flows[n]["dollars"][line]) for n in names) + " |")
    out.append("| **total** | " + " | ".join(f"**{_usd(flows[n]['total'])}**" for n in names) + " |")
    for line in next(iter(flows.values()))["storage_per_month"]:
        out.append(
            f"| storage: {line} | " + " | ".join(_usd(flows[n]["storage_per_month"][line]) for n in names) + " |"
        )
    out += [
        "",
        "Usage per invoice behind the dollars:",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    usage_rows = [
        ("Lambda invocations", "lambda_requests", "{:.0f}"),
        ("Lambda billed ms at 512 MB (modelled)", "lambda_billed_ms", "{:.0f}"),
        ("HTTP API requests", "api_requests", "{:.0f}"),
        ("DynamoDB write units", "dynamodb_wru", "{:.0f}"),
        ("DynamoDB read units", "dynamodb_rru", "{:.1f}"),
        ("SQS requests (hub + event sources)", "sqs_requests", "{:.0f}"),
        ("S3 PUT / GET-class", None, None),
        ("EventBridge events", "events", "{:.0f}"),
        ("bytes logged", "log_bytes", "{:,.0f}"),
        ("bytes put in S3", "s3_stored_bytes", "{:,.0f}"),
        ("DynamoDB item bytes kept", "dynamodb_stored_bytes", "{:,.0f}"),
    ]
    for label, key, fmt in usage_rows:
        if key is None:
            cells = [f"{flows[n]['usage']['s3_put']} / {flows[n]['usage']['s3_get']}" for n in names]
        else:
            cells = [fmt.format(flows[n]["usage"][key]) for n in names]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", _money_notes(results)]
    warm = costs["warm_billed_ms"]
    out += [
        "",
        "Modelled warm billed duration per invocation (median over the flows): "
        + ", ".join(f"{SHORT.get(k, k)} {v:.0f} ms" for k, v in sorted(warm.items())),
        "",
        "Fixed, whatever the volume (per month): "
        + "; ".join(f"{k} {_usd(v)}" for k, v in costs["fixed_monthly"].items())
        + ".",
        "",
        "How the figures are built (`bench/cost.py`):",
        "",
        _cost_notes(),
        "",
        "Not included: data transfer out (webhooks, channel calls: per GB, small bodies), X-Ray",
        "(`Tracing: Active`: the default sampling records one request a second and 5% of the rest, so",
        "about 0.2 traces per invoice at steady load, some $1 per million invoices at $5 per million",
        "traces), CloudWatch",
        "custom metrics (Powertools EMF: $0.30 per metric a month, not per invoice), KMS (SSE uses",
        "AWS-owned keys), the SSM parameter read (once per container per 5 minutes), the GET a business",
        "system makes to download the files (1 Lambda invocation, 1 GetItem, 1 BatchGetItem, 1 S3 GET",
        "per file: about $0.4 per million), and Lambda's INIT phase of cold starts (billed since August",
        "2025: section 3's times x 0.5 GB per cold start). Real invoice PDFs and OFDs are tens of KB,",
        "not the sandboxes' few hundred bytes: 100 KB per invoice kept is $2.30 a month per million",
        "invoices in S3 Standard. Under load the event sources deliver up to 10 messages per invocation",
        "and per receive, which cuts the Lambda-request and event-source SQS lines by up to 10x.",
    ]
    return "\n".join(out) + "\n"


def _money_notes(results: dict[str, Any]) -> str:
    flows = results["requests"]["flows"]
    costs = results["cost"]["flows"]
    name = "xunlian" if "xunlian" in flows else next(iter(flows))
    flow, c = flows[name], costs[name]
    writes = c["dollars"]["DynamoDB writes"]
    share = writes / c["total"] * 100 if c["total"] else 0
    app = flow["application_item_bytes"]
    document = flow.get("document_bytes", 0)
    units = max(1, -(-app // 1024))
    updates = flow["by_operation"].get("dynamodb:UpdateItem", 0)
    puts = flow["by_operation"].get("dynamodb:PutItem", 0)
    return "\n".join(
        [
            f"**Where the money goes.** DynamoDB writes are {share:.0f}% of the {FLOW_TITLES[name]} flow's cost",
            f"({c['usage']['dynamodb_wru']:.0f} write units for {updates} updates and {puts} puts). The",
            f"application item is {app:,} bytes at the",
            f"end ({document:,} of them the gzipped order document, the rest the lifecycle and its history),",
            f"so every write to it costs {units} write units, and each that moves the due-work index entry",
            "(every transition) 1-2 more. Two changes would cut the line by about half: dropping the extra",
            "writes of section 1 (clear_pending_event, the separate invoice file records) and",
            "keeping the document in an item of its own, written once at intake, so that the item every",
            "transition rewrites stays under 1 KB (1 unit a write). S3 PUTs ($5 per million) are the next",
            "line where files are stored: each file, and each archived push, is one.",
        ]
    )


def _cost_notes() -> str:
    doc = cost_model.__doc__ or ""
    body = doc.split("Per flow (one invoice issued", 1)[-1]
    return "Per flow (one invoice issued" + body.rstrip()


# ============================================================================ cold start
def coldstart_section(results: dict[str, Any]) -> str:
    unavailable = _unavailable(results, "coldstart", "## 3. Cold start per function")
    if unavailable:
        return unavailable
    cold = results["coldstart"]
    functions = cold["functions"]
    out = [
        "## 3. Cold start per function",
        "",
        f"Target: import plus init of each handler at most {TARGET_COLD}x that of a fresh process that only",
        "imports boto3 and creates the clients the function needs. Median of "
        f"{cold['runs']} fresh processes each (interleaved; the side figures without Tracer and without",
        f".pyc: median of {cold.get('side_runs', cold['runs'])}), packages from {cold['packages']}.",
        "",
        "The handler's process puts the function's directory and the layer on sys.path, imports `app` and",
        "calls the runtime factories its first request calls (listed), with a Lambda's environment",
        "(`LAMBDA_TASK_ROOT` and `AWS_LAMBDA_FUNCTION_NAME` set: Powertools' Tracer is on, as with",
        "`Tracing: Active`), the template's variables and an endpoint on 127.0.0.1:9 (nothing connects).",
        "Both time themselves from their first line to the end; the interpreter's own start-up is the",
        "same for both and left out (the 'process' columns include it). Default: the code compiled",
        "(`.pyc`, as the layer is built: `layers/hub/Makefile` compiles it); 'no .pyc': the same sources",
        "without them (what every cold start paid before the layer was compiled).",
        "",
        "| function | builds | handler | boto3 + clients | ratio | target | | without Tracer | process ratio "
        "| no .pyc: handler | no .pyc: boto3 | no .pyc ratio |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, f in functions.items():
        out.append(
            f"| {name} | {', '.join(f['factories'])} | {_ms(f['handler']['total_s'])} "
            f"| {_ms(f['baseline']['total_s'])} ({', '.join(f['clients'])}) | {f['ratio']:.2f}x | <= {TARGET_COLD}x "
            f"| {_ok(f['ratio'], TARGET_COLD)} | {f['ratio_no_tracer']:.2f}x | {f['ratio_process']:.2f}x "
            f"| {_ms(f['handler_no_pyc']['total_s'])} | {_ms(f['baseline_no_pyc']['total_s'])} "
            f"| {f['ratio_no_pyc']:.2f}x |"
        )
    out += [
        "",
        "Handler time split: "
        + "; ".join(
            f"{n} import {_ms(f['handler']['import_s'])} + init {_ms(f['handler']['init_s'])} "
            f"({f['handler']['modules']:.0f} modules; boto3 alone {f['baseline']['modules']:.0f})"
            for n, f in functions.items()
        )
        + ".",
        "",
        "### Which imports dominate (`-X importtime`, median of 3)",
        "",
        "Self time by top-level package (ms; everything the handler's process imports):",
        "",
    ]
    packages: list[str] = []
    for f in functions.values():
        for package in f["importtime"]["self_by_package_s"]:
            if package not in packages:
                packages.append(package)
    packages = packages[:16]
    out += ["| package | " + " | ".join(functions) + " |", "|---|" + "---:|" * len(functions)]
    for package in packages:
        cells = [_ms_cell(f["importtime"]["self_by_package_s"], package) for f in functions.values()]
        out.append(f"| {package} | " + " | ".join(cells) + " |")
    out += [
        "",
        "Cumulative import time of the hub's modules and the libraries they pull in (ms; a module's",
        "time is charged to its first importer):",
        "",
    ]
    modules: list[str] = []
    for f in functions.values():
        for module in f["importtime"]["cumulative_s"]:
            if module not in modules:
                modules.append(module)
    out += ["| module | " + " | ".join(functions) + " |", "|---|" + "---:|" * len(functions)]
    for module in modules:
        cells = [_ms_cell(f["importtime"]["cumulative_s"], module) for f in functions.values()]
        out.append(f"| {module} | " + " | ".join(cells) + " |")
    out += ["", "### Why the target is missed and what would fix it", "", _cold_fixes(functions)]
    return "\n".join(out) + "\n"


def _ms_cell(values: dict[str, float], key: str) -> str:
    return f"{values[key] * 1000:.0f}" if key in values else "-"


def _cum(functions: dict[str, Any], function: str, module: str) -> str:
    value = functions.get(function, {}).get("importtime", {}).get("cumulative_s", {}).get(module)
    return f"{value * 1000:.0f} ms" if value is not None else "n/a"


def _cold_fixes(functions: dict[str, Any]) -> str:
    worst = max(functions.items(), key=lambda kv: kv[1]["ratio"])
    pyc_gain = {n: f["handler_no_pyc"]["total_s"] - f["handler"]["total_s"] for n, f in functions.items()}
    tracer = {n: f["handler"]["total_s"] - f["handler_no_tracer"]["total_s"] for n, f in functions.items()}
    met = all(f["ratio"] <= TARGET_COLD for f in functions.values())
    batch = _cum(functions, "dispatch", "aws_lambda_powertools.utilities.batch")
    lead = (
        "Every function is within the target."
        if met
        else f"The worst is {worst[0]} at {worst[1]['ratio']:.2f}x: the target is missed."
    )
    return "\n".join(
        [
            lead + " Done so far (each function now imports only what it uses, checked by",
            "tests/unit/test_cold_start_imports.py):",
            "",
            "- **The layer ships compiled code**: `layers/hub/Makefile` runs `compileall --invalidation-mode",
            "  unchecked-hash` (/opt is read-only in Lambda, so without .pyc files every cold start compiled",
            "  every module it imported: "
            + ", ".join(f"{n} +{v * 1000:.0f} ms" for n, v in pyc_gain.items())
            + ", the 'no .pyc' columns);",
            "  `make sam-build` fails if a module of the built layer has no such .pyc. The largest win, but it",
            "  helps the boto3 baseline as much, so the ratios barely show it.",
            "- **`fapiao_hub.runtime` imports inside its factories**, and the workflow imports the channels, the",
            "  file store and callback authentication inside the dispatcher's and callback receiver's methods:",
            "  intake and poller load no channel module, no notifier and no `requests`.",
            "- **The Tracer patches only what each function calls** (`patch_modules`): botocore for intake and",
            "  poller, botocore and requests for the rest (the default also imported requests and sqlite3).",
            "",
            "What is left is not the hub's code but its libraries, each chosen for this stack: pydantic (~45-50",
            "ms with its core), pydantic-settings (~20 ms), Powertools' Logger and Metrics (~20-30 ms), its",
            "HTTP event handler with the OpenAPI models (intake, callback: ~20 ms), X-Ray (Tracer: "
            + ", ".join(f"{n} {v * 1000:+.0f} ms" for n, v in tracer.items())
            + ", noisy) and",
            f"Powertools' batch utility (dispatch, notifier: {batch} in dispatch). Together they put the floor",
            "near 1.5-1.6x whatever the hub does. What would go further, and why it is not done:",
            "",
            "1. **Replace Powertools' batch utility** with a loop over `event['Records']` returning",
            "   `{'batchItemFailures': [...]}` (~20-30 ms in dispatch and notifier). Tried and measured; kept",
            "   Powertools for its tested partial-failure contract, as the stack prescribes.",
            "2. **`defer_build=True` on pydantic models** moves ~6 ms to first use in the poller only (every",
            "   other function validates on its first request); pydantic 2.13 does not lock the deferred",
            "   build, and the local run serves several handlers in one process. Not done.",
            "3. **`Tracing: PassThrough` and `POWERTOOLS_TRACE_DISABLED=true`** if the X-Ray traces are not",
            "   used: the Tracer's share above. Kept: traces are how a stuck application is followed across",
            "   functions.",
            "4. **The DynamoDB resource API** (`boto3.resource`) in `application_store` loads the resource",
            "   model on top of the client's (~11 ms in 'init'); a low-level client with",
            "   `TypeSerializer`/`TypeDeserializer` avoids it (a rewrite of the store's reads, infra/store/).",
            "5. **Provisioned concurrency or SnapStart for Python** removes the cold start from the request",
            "   path altogether, at a price per hour; the import figures here are what it would snapshot.",
        ]
    )


# ============================================================================ warm
def warm_section(results: dict[str, Any]) -> str:
    unavailable = _unavailable(results, "warm", "## 4. Warm overhead of the intake handler")
    if unavailable:
        return unavailable
    w = results["warm"]
    calls = ", ".join(f"{k} x{v:g}" for k, v in w["calls_per_request"].items())
    verdict = _ok(w["ratio"], TARGET_WARM)
    out = [
        "## 4. Warm overhead of the intake handler",
        "",
        f"Target: at most {TARGET_WARM}x the same DynamoDB and SQS calls made bare with boto3.",
        "",
        f"{w['requests']} requests after {w['warmup']} warm-up ones, each a new order",
        "(docs/examples/order-xunlian.json under a fresh openApplyCode), in process against moto's",
        "in-process mock with the tables and queue provisioned from template.yaml. After each handler",
        "request the very requests it made (captured on the wire by a `before-call` hook: same number,",
        "kind, order and content) are sent again with low-level boto3 clients to a twin copy of the",
        "tables and queue.",
        "",
        "| | median | mean | p95 |",
        "|---|---:|---:|---:|",
        f"| intake handler (Powertools, auth, parsing, rules, models, store, queue, logs, metrics) "
        f"| {w['hub_median_ms']:.1f} ms | {w['hub_mean_ms']:.1f} ms | {w['hub_p95_ms']:.1f} ms |",
        f"| the same AWS calls, bare ({calls}) | {w['bare_median_ms']:.1f} ms | {w['bare_mean_ms']:.1f} ms "
        f"| {w['bare_p95_ms']:.1f} ms |",
        f"| **ratio** | **{w['ratio']:.2f}x** | {w['ratio_mean']:.2f}x | |",
        "",
        f"Target <= {TARGET_WARM}x: {verdict}. The hub's own work is "
        f"{w['hub_median_ms'] - w['bare_median_ms']:.1f} ms a request here (moto's in-process handling",
        "of the calls is most of the bare figure; against DynamoDB and SQS the calls take longer and the",
        "ratio is lower).",
    ]
    if w["ratio"] > TARGET_WARM:
        out += [
            "",
            "Missed. Intake now makes two AWS calls a request instead of four (no read before the put, no",
            "`mark_queued`): both figures fell, the bare one by more, and the hub's own work per request",
            "(parsing, the tax rules, the models, Powertools' resolver and logging: the difference of the",
            "medians above) is a larger share of a smaller total. Against DynamoDB and SQS, whose calls",
            "take milliseconds each rather than moto's fraction of one, the ratio is well under the target.",
            "What would lower it here: profile the handler",
            "(`python -m cProfile -m bench.warm --out /tmp/w.json`); the candidates are",
            "`seed004.to_application`'s validation and the DynamoDB resource API's type",
            "conversions (a low-level client with TypeSerializer).",
        ]
    return "\n".join(out) + "\n"


# ============================================================================ polling
def polling_section(results: dict[str, Any]) -> str:
    unavailable = _unavailable(results, "polling", "## 5. Polling cost vs. table size")
    if unavailable:
        return unavailable
    p = results["polling"]
    sizes = p["sizes"]
    equal = _same_requests(sizes)
    out = [
        "## 5. Polling cost vs. table size",
        "",
        "Target: equal requests whatever the table size, for the same number of due applications.",
        "",
        f"One poller run (the function's handler, median of {p['runs']}) against the applications table",
        f"with {p['due']} applications due, 5% of the table open but due later (in the sparse index),",
        "the rest final (not in the index); tiny items written with BatchWriteItem under moto's",
        "in-process mock, the table grown from the first size to the next.",
        "",
        "| stored applications | in the due-work index | due | requests | read by the Query | time (moto) |",
        "|---:|---:|---:|---|---:|---:|",
    ]
    for s in sizes:
        requests = _calls(s["requests"])
        out.append(
            f"| {s['size']:,} | {s['in_index']:,} | {s['due']} | {requests} | {s['query_read_bytes']:,} bytes "
            f"(0.5 read unit) | {s['median_ms']:.0f} ms |"
        )
    out += [
        "",
        f"Equal requests: {'**met**' if equal else '**missed**'} "
        f"({sizes[0]['total_requests']} at {sizes[0]['size']:,}, "
        f"{sizes[-1]['total_requests']} at {sizes[-1]['size']:,}: one Query of the due-work index, one",
        "conditional UpdateItem per due application (its claim), one SendMessageBatch per 10 due; the",
        "50 are made due again before each run). The Query reads only the due entries (a key condition on",
        "`next_poll_at`), so its read units follow the due work too. The time grows here because moto",
        "answers an index query by scanning the whole table; DynamoDB reads only the entries it returns.",
        "Filling the table took " + ", ".join(f"{s['fill_s']:.0f} s to {s['size']:,}" for s in sizes) + ".",
    ]
    if not equal:
        out += ["", "Missed: the poller's requests depend on the table; see `Poller.run` and `store.due`."]
    return "\n".join(out) + "\n"


# ============================================================================ reconciliation
def reconciliation_section(results: dict[str, Any]) -> str:
    title = "## 5b. Reconciliation cost vs. table size"
    unavailable = _unavailable(results, "reconciliation", title)
    if unavailable:
        return unavailable
    r = results["reconciliation"]
    sizes = r["sizes"]
    equal = _same_requests(sizes)
    out = [
        title,
        "",
        "Target: equal DynamoDB requests whatever the table size, for the same window (issue 12).",
        "",
        f"One reconciliation run (the function's handler, last of {r['runs']}) with {r['in_window']} applications",
        f"settled in the window ({r['needing_person']} of them also waiting for a person), the rest settled 40",
        "days before (outside the window); Xunlian, which has no query, so no channel is asked.",
        "",
        "| stored applications | checked | DynamoDB requests | all requests | time (moto) |",
        "|---:|---:|---:|---|---:|",
    ]
    for s in sizes:
        requests = _calls(s["requests"])
        out.append(
            f"| {s['size']:,} | {s['checked']} | {s['dynamodb_requests']} | {requests} | {s['median_ms']:.0f} ms |"
        )
    ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
    out += [
        "",
        f"Equal requests: {'**met**' if equal else '**missed**'} (ratio {ratio}): one Query per (China-time",
        "day, shard) of the window on the `settled` index, one on the `attention` index, then one GetItem",
        "and one BatchGetItem (its invoices) per application checked, and the report's three S3 objects.",
    ]
    return "\n".join(out) + "\n"


# ============================================================================ listing (operations desk)
def listing_section(results: dict[str, Any]) -> str:
    title = "## 5c. The operations desk's list vs. table size"
    unavailable = _unavailable(results, "listing", title)
    if unavailable:
        return unavailable
    r = results["listing"]
    names = list(r["sizes"][0]["pages"])
    out = [
        title,
        "",
        "Target: a page costs the same with 1,000 or 100,000 stored applications, never a Scan (issue 13).",
        "",
        f"One page of {r['page']} (`GET /v1/ops/applications`, the ops function's handler): {r['recent']} applications",
        "of the sample business system received in the last hours, RECEIVED; the rest of another business",
        "system, ISSUED, a month older (in the same partitions of the unfiltered index, no other's).",
        "",
        "| stored applications | " + " | ".join(f"DynamoDB requests, {n}" for n in names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for s in r["sizes"]:
        cells = " | ".join(f"{s['pages'][n]['dynamodb_requests']} ({s['pages'][n]['rows']} rows)" for n in names)
        out.append(f"| {s['size']:,} | {cells} |")
    out += [
        "",
        f"Equal requests: {'**met**' if r['equal'] else '**missed**'}: one Query per shard of the listing index",
        "the filter chooses (store.LIST_SHARDS = 4), each limited to the page; more only when other filters drop",
        "items. Times are moto's and not a target.",
    ]
    return "\n".join(out) + "\n"


# ============================================================================ batch submission
def batch_section(results: dict[str, Any]) -> str:
    title = "## 5d. Batch submission: AWS requests per order at intake"
    unavailable = _unavailable(results, "batch", title)
    if unavailable:
        return unavailable
    r = results["batch"]
    n = r["orders"]

    def ops(requests: dict[str, int]) -> str:
        return ", ".join(f"{op} {count}" for op, count in sorted(requests.items()))

    out = [
        title,
        "",
        f"{n} new blue orders through the intake function's handler (moto, in process), sent as {n} single",
        f"`POST /v1/invoice-orders` and as one `POST /v1/invoice-orders/batch` of {n}; then the same batch again.",
        "Each order is still its own conditional PutItem (conditional writes cannot share a BatchWriteItem);",
        "the batch sends the dispatch requests ten per SendMessageBatch. Dispatch onwards costs the same per",
        "application however it arrived (section 1).",
        "",
        "| submitted as | AWS requests | per order | requests |",
        "|---|---:|---:|---|",
        *(
            f"| {label} | {r[key]['total']} | {r[key]['per_order']:.2f} | {ops(r[key]['requests'])} |"
            for key, label in (
                ("single", f"{n} single POSTs"),
                ("batch", f"one batch of {n}"),
                ("resend", "the batch again"),
            )
        ),
        "",
        f"Single POSTs make **{r['ratio']:.2f}x** the AWS requests of a batch (and {n} HTTP calls instead of one).",
        "A resend costs the same as the batch: each repeat is recognised by its failed conditional put, and an",
        "application still RECEIVED asks for its dispatch again (the first request may have been lost).",
    ]
    return "\n".join(out) + "\n"


# ============================================================================ throughput
def throughput_section(results: dict[str, Any]) -> str:
    unavailable = _unavailable(results, "throughput", "## 6. Throughput of the local run")
    if unavailable:
        return unavailable
    t = results["throughput"]
    out = [
        "## 6. Throughput of the local run",
        "",
        "No target set; issue 7 asks for the figures. "
        f"**{t['submitted']:,} orders** ({t['orders']:,} asked, `BENCH_ORDERS`"
        + (
            f"; the clients stopped at the {t['submit_budget_seconds']:.0f} s submit budget, "
            "`BENCH_THROUGHPUT_SUBMIT_SECONDS`"
            if t.get("stopped_by_budget")
            else ""
        )
        + f") by {t['clients']} concurrent "
        "clients over HTTP, round-robin over the four sample companies (Xunlian, partner, Kingdee,",
        "Ekuaibao), the whole hub in one process (`local.run.start`), the poller every "
        f"{t.get('schedule_seconds', 5):.0f} s (`BENCH_SCHEDULE_SECONDS`; template.yaml's rate is 1 minute).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| orders per second, first submit to last final state | **{t['orders_per_second']:.1f}** "
        f"({t.get('final', t['submitted']):,} final) |",
        f"| elapsed, first submit to last final state | {t['elapsed_seconds']:.0f} s |",
        f"| submitting took | {t['submit_seconds']:.0f} s ({t['submit_rate']:.1f} orders/s accepted) |",
        f"| intake answer p50 / p95 | {t['intake_answer_p50_ms']:.0f} / {t['intake_answer_p95_ms']:.0f} ms |",
        f"| submit to ISSUED p50 / p95, all | {t['to_issued_p50_s']:.1f} / {t['to_issued_p95_s']:.1f} s |",
    ]
    for name, v in t["to_issued_by_channel"].items():
        out.append(f"| submit to ISSUED p50 / p95, {name} ({v['n']}) | {v['p50_s']:.1f} / {v['p95_s']:.1f} s |")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(t["statuses"].items()))
    refusals = ""
    if t["refused"]:
        seen = t.get("refused_events") or []
        refusals = (
            f"\n\n**{t['refused']} valid order(s) were refused** (every order sent is docs/examples' valid"
            " order under a new code). The answers: "
            + "; ".join(f"`{r[:160]}`" for r in t["refusals"][:3])
            + (
                ". What the intake function received: "
                + "; ".join(
                    f"{e['status']} for a {e['body_length']}-character body (Content-Length "
                    f"{e['content_length']}, base64 {e['base64']}) starting `{e['body_start'][:80]}`"
                    for e in seen[:3]
                )
                if seen
                else ""
            )
            + ". A 4xx to a valid request: worth a look by whoever owns intake and the local gateway."
        )
    out += [
        f"| final states at the end of the window | {statuses}"
        f"{'; not final: the drain window ended first' if t['timed_out'] else ''} |",
        f"| valid orders refused by intake | {t['refused']} |",
        "",
        "Invocations: "
        + ", ".join(
            f"{SHORT.get(k, k)} {v['invocations']} ({v['wall_s'] / max(v['invocations'], 1) * 1000:.0f} ms each)"
            for k, v in t["invocations"].items()
        )
        + ".",
        refusals,
        "",
        *_amplification(t),
        "What bounds it here, not in AWS: the local run runs one invocation per function at a time (one",
        "container each; Lambda runs as many intakes as requests and up to 20 dispatchers), serializes",
        "every DynamoDB request (local.atomic_moto), shares two cores and one interpreter lock between",
        "the clients, the functions, moto and the sandboxes, and its out-of-band forwarder reads the",
        "due-work index every second for Ekuaibao's applications. The polled channels' time to ISSUED is",
        "their first poll interval (10 s) plus the wait for the next poller run, and partner's sandbox",
        "issues only after the first query (a second poll).",
    ]
    return "\n".join(out) + "\n"


def _amplification(t: dict[str, Any]) -> list[str]:
    sent = t.get("dispatch_requests_sent")
    if not sent or not t["submitted"]:
        return []
    per = sent / t["submitted"]
    by_poller = t.get("dispatch_requests_by_poller", 0)
    return [
        f"**Dispatch requests per application: {per:.1f}** ({sent:,} sent for {t['submitted']:,} applications,",
        f"{by_poller:,} of them by the poller). Besides intake's one, an application gets a message when",
        "a step asks to be run again later (a delayed message: a retry, a quiet period) and when the",
        "poller finds it due; the poller claims each application it queues (its `next_poll_at` moved on",
        "by `POLL_CLAIM_SECONDS`, 300 s), so a dispatch backlog adds at most one message per application",
        "per claim, not one per poller run (before the claim, the first run of this benchmark sent 2.4",
        "per application, most of them duplicates of a waiting message). The rest are duplicates the",
        "dispatcher answers 'nothing to do' or 'lost race' with one read.",
        "",
    ]


# ============================================================================ whole
def render(machine: dict[str, Any], results: dict[str, Any], command: str) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    head = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`, the code in `bench/`); do not edit by hand.",
        "",
        "| | |",
        "|---|---|",
        f"| date | {machine['date']} |",
        f"| command | `{command}` |",
        f"| machine | {machine['cores']} cores, {machine['cpu']}, {machine['memory']} memory, {machine['platform']} |",
        f"| Python | {machine['python']} ({versions}) |",
        f"| commit | {machine['commit']} |",
        f"| sections | {_timing(results)} |",
        "",
        *_load_warning(machine, results),
        "Sizes can be scaled down: `BENCH_ORDERS=500 make bench` (throughput), `BENCH_COLD_RUNS`,",
        "`BENCH_WARM_REQUESTS`, `BENCH_POLL_SIZES`; one section: `python -m bench --sections warm`.",
        "No figure is asserted on; the targets are issue 7's.",
        "",
        "## Summary",
        "",
        summary_table(results),
        "",
    ]
    body = [
        requests_section(results),
        cost_section(results),
        coldstart_section(results),
        warm_section(results),
        polling_section(results),
        reconciliation_section(results),
        listing_section(results),
        batch_section(results),
        throughput_section(results),
        soak_section(results.get("soak")),
    ]
    return "\n".join(head) + "\n" + "\n".join(body)


def soak_section(soak: dict[str, Any] | None) -> str:
    """Section 7: the last `make soak` (bench/last-soak.json, written by bench.soak --json)."""
    out = ["", "## 7. Load with faults (`make soak`)", ""]
    if not soak:
        return "\n".join([*out, "No `make soak` run recorded yet (bench/last-soak.json).", ""])
    faults = soak["faults"]
    states: dict[str, int] = {}
    for by_status in soak["final_states"].values():
        for status, n in by_status.items():
            states[status] = states.get(status, 0) + n
    verdict = "**passed**" if not (soak["issued_twice"] or soak["lost"] or soak["server_errors"]) else "**FAILED**"
    out += [
        f"Run {soak.get('date', '?')} at commit {soak.get('commit', '?')} (`{soak.get('command', 'make soak')}`), "
        f"on the machine above unless it says otherwise: {soak.get('machine', '')}.",
        "",
        f"{soak['orders']:,} orders through the local run (seed {soak['seed']}), round-robin over the four sample",
        f"channels, while the sandboxes answered {faults['error_5xx']:.0%} with a 5xx and held "
        f"{faults['timeout_after_issue']:.0%} past the hub's timeout *after* issuing, Ekuaibao's pushes were "
        f"duplicated ({faults['duplicate_callbacks']:.0%}) and sent out of order "
        f"({faults['out_of_order_callbacks']:.0%}),",
        f"and dispatchers crashed at each step boundary ({faults['crash_rate_per_boundary']:.0%} per boundary, half "
        "of them killing the whole batch like a Lambda timeout). Verdict: " + verdict + ".",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| issued twice (the sandboxes' own counts per request number) | **{soak['issued_twice']}** |",
        f"| lost (not final and not visibly flagged) | **{soak['lost']}** |",
        f"| 5xx answers to valid requests | **{soak['server_errors']}** |",
        f"| left open at the end | {soak['left_open']} |",
        f"| final states | {_figures(dict(sorted(states.items())))} |",
        f"| intake answers | {_figures(soak['intake_answers'], ': ')} |",
        f"| dispatcher crashes injected | {sum(soak['dispatcher_crashes'].values()):,} |",
        f"| Ekuaibao pushes answered | {_figures(soak.get('ekuaibao_pushes', {}), ': ')} |",
        f"| recoveries in the applications' history | "
        f"{_figures(dict(sorted(soak.get('history_notes', {}).items())))} |",
        f"| dispatch records per order | {soak['dispatch_records_per_order']} |",
        f"| dispatch DLQ at the end | {soak['dispatch_dlq_depth']} |",
        f"| elapsed, first submit to last final state | {soak['elapsed_seconds']:,.0f} s "
        f"({soak['orders_per_second_to_final']} orders/s) |",
        "",
        "Per channel (hub's final states / the sandbox's own counts):",
        "",
        "| channel | final states | sandbox |",
        "|---|---|---|",
        *(
            f"| {name} | {_figures(dict(sorted(by.items())))} | {_figures(soak['sandboxes'].get(name) or {})} |"
            for name, by in soak["final_states"].items()
        ),
        "",
        "Crashes by boundary: "
        + _figures(dict(sorted(soak["dispatcher_crashes"].items())))
        + ". `make test` runs the same at 160 orders (tests/integration/test_soak.py).",
        "",
    ]
    if "max_open" in soak:
        clients, held = soak.get("clients", 8), soak["held_back_seconds"]
        out += [
            f"How the local run carries it: moto runs in a process of its own, and the {clients} clients hold",
            f"back while {soak['max_open']:,} applications are open ({held:,.0f} s of the "
            f"{soak['submit_seconds']:,.0f} s of submitting were spent held back).",
            "Without either, the 10,000-order run did not drain (2026-11-21): with everything in one",
            "interpreter, moto's SQS receive and delete walk every message in the queue and its index queries",
            "walk the whole table, so each step got slower as the backlog grew (3,800 applications open behind",
            "7,300 dispatch messages after 70 minutes, none lost). The cap is the local run's, not the hub's:",
            "in AWS, SQS and DynamoDB cost the same per request at any depth.",
            "",
        ]
    if soak["orders"] < 10_000:
        out += [
            f"**Smaller than the 10,000 `make soak` runs by default** ({soak['orders']:,} orders).",
            "",
        ]
    return "\n".join(out)


SECTION_NAMES = ("requests", "coldstart", "warm", "polling", "reconciliation", "listing", "batch", "throughput")


def _timing(results: dict[str, Any]) -> str:
    parts = []
    for name in SECTION_NAMES:
        section = results.get(name)
        if isinstance(section, dict) and "_seconds" in section:
            load = section.get("_load") or [0, 0]
            ran = f", ran {section['_ran']}" if section.get("_ran") else ""
            parts.append(f"{name} {section['_seconds']:.0f} s (load {load[0]:.1f} to {load[1]:.1f}{ran})")
    return "; ".join(parts) + " (load: the 1-minute load average before and after)" if parts else "-"


def _load_warning(machine: dict[str, Any], results: dict[str, Any]) -> list[str]:
    cores = machine.get("cores") or 1
    peak = max(
        (max(s.get("_load") or [0]) for s in results.values() if isinstance(s, dict) and "_load" in s), default=0
    )
    if peak <= cores:
        return []
    return [
        f"**The machine was shared during this run** (load average up to {peak:.1f} on {cores} cores: other",
        "processes were busy). Times and throughput are inflated by it, the ratios less so (each pair is",
        "measured interleaved); request counts, floors and costs derived from counts are unaffected.",
        "Re-run `make bench` on a quiet machine for clean timings.",
        "",
    ]


def _summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    r = _ran(results, "requests")
    if r:
        for name, flow in r["flows"].items():
            _, floor_total = flow_rows(name, flow)
            ratio = flow["total"] / floor_total
            rows.append(
                (f"requests per invoice, {FLOW_TITLES[name]}", f"{flow['total']} (floor {floor_total}): {ratio:.2f}x",
                 f"<= {TARGET_REQUESTS}x", "met" if ratio <= TARGET_REQUESTS else "missed (section 1)")
            )  # fmt: skip
    c = results.get("cost")
    if c:
        for name, flow in c["flows"].items():
            rows.append((f"cost per million invoices, {FLOW_TITLES[name]}", _usd(flow["total"]), "-", "no target"))
    cold = _ran(results, "coldstart")
    if cold:
        for name, f in cold["functions"].items():
            figure = f"{_ms(f['handler']['total_s'])} vs {_ms(f['baseline']['total_s'])}: {f['ratio']:.2f}x"
            verdict = "met" if f["ratio"] <= TARGET_COLD else "missed (section 3)"
            rows.append((f"cold start, {name}", figure, f"<= {TARGET_COLD}x", verdict))
    w = _ran(results, "warm")
    if w:
        rows.append(
            ("warm intake request", f"{w['hub_median_ms']:.1f} ms vs {w['bare_median_ms']:.1f} ms: {w['ratio']:.2f}x",
             f"<= {TARGET_WARM}x", "met" if w["ratio"] <= TARGET_WARM else "missed (section 4)")
        )  # fmt: skip
    p = _ran(results, "polling")
    if p:
        sizes = p["sizes"]
        equal = _same_requests(sizes)
        figure = " vs ".join(f"{s['total_requests']} at {s['size']:,}" for s in sizes)
        rows.append(("poller requests vs table size", figure, "equal", "met" if equal else "missed (section 5)"))
    rc = _ran(results, "reconciliation")
    if rc:
        sizes = rc["sizes"]
        equal = len({s["dynamodb_requests"] for s in sizes}) == 1
        figure = " vs ".join(f"{s['dynamodb_requests']} at {s['size']:,}" for s in sizes)
        rows.append(
            ("reconciliation DynamoDB requests vs table size", figure, "equal", "met" if equal else "missed (5b)")
        )
    ls = _ran(results, "listing")
    if ls:
        figure = " vs ".join(f"{total} at {s['size']:,}" for total, s in zip(ls["per_size"], ls["sizes"], strict=True))
        rows.append(
            ("ops list DynamoDB requests vs table size", figure, "equal", "met" if ls["equal"] else "missed (5c)")
        )
    b = _ran(results, "batch")
    if b:
        rows.append(
            (f"requests per batched order (batch of {b['orders']})",
             f"{b['batch']['per_order']:.2f} vs {b['single']['per_order']:.2f} per single POST: "
             f"{b['ratio']:.2f}x fewer",
             "-", "no target")
        )  # fmt: skip
    t = _ran(results, "throughput")
    if t:
        rows.append(
            (f"throughput, {t['submitted']:,} orders, {t['clients']} clients",
             f"{t['orders_per_second']:.1f} orders/s; to ISSUED p50 {t['to_issued_p50_s']:.1f} s, "
             f"p95 {t['to_issued_p95_s']:.1f} s", "-", "no target")
        )  # fmt: skip
    soak = results.get("soak")
    if soak:
        bad = soak["issued_twice"] + soak["lost"] + soak["server_errors"]
        rows.append(
            (f"soak, {soak['orders']:,} orders with faults",
             f"issued twice {soak['issued_twice']}, lost {soak['lost']}, 5xx {soak['server_errors']}",
             "0, 0, 0", "met" if not bad else "missed (section 7)")
        )  # fmt: skip
    for name in SECTION_NAMES:
        section = results.get(name)
        if section is None:
            rows.append((name, "not run", "", ""))
        elif "error" in section:
            rows.append((name, "FAILED", "", "see its section"))
    return rows


def summary_table(results: dict[str, Any]) -> str:
    lines = ["| figure | result | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in _summary_rows(results)]
    return "\n".join(lines)


def summary(results: dict[str, Any]) -> str:
    rows = _summary_rows(results)
    width = max((len(r[0]) for r in rows), default=10)
    return "\n".join(f"{a:<{width}}  {b}  [{c}{', ' + d if d else ''}]" for a, b, c, d in rows)
