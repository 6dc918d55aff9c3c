"""bench.report.soak_section: section 7 of docs/benchmarks.md from the last `make soak` tallies."""

from __future__ import annotations

import copy

from bench.report import soak_section

SOAK = {
    "date": "2026-11-21 20:00 UTC",
    "command": "make soak (SOAK_ORDERS=10000, SOAK_SEED=1)",
    "commit": "abc1234",
    "machine": "2 cores",
    "orders": 10_000,
    "seed": 1,
    "faults": {
        "error_5xx": 0.05,
        "timeout_after_issue": 0.02,
        "duplicate_callbacks": 0.05,
        "out_of_order_callbacks": 0.05,
        "crash_rate_per_boundary": 0.02,
    },
    "elapsed_seconds": 1800.0,
    "submit_seconds": 1500.0,
    "clients": 8,
    "max_open": 400,
    "held_back_seconds": 900.0,
    "orders_per_second_to_final": 5.56,
    "intake_answers": {"200": 10_200},
    "final_states": {"xunlian": {"ISSUED": 2500}, "partner": {"ISSUED": 2499, "MANUAL_REVIEW": 1}},
    "dispatcher_crashes": {"after-claim crash": 10, "after-claim kill": 12},
    "sandboxes": {"xunlian": {"issued": 2500, "numbers": 2500}},
    "ekuaibao_pushes": {"result 200": 2500, "duplicate 200": 119, "out_of_order 200": 121},
    "history_notes": {"outcome unknown": 297, "dispatch lease expired": 449},
    "dispatch_records_per_order": 3.1,
    "dispatch_dlq_depth": 0,
    "issued_twice": 0,
    "lost": 0,
    "left_open": 0,
    "server_errors": 0,
}


def test_a_clean_full_size_run_passes_and_says_how_the_local_run_carried_it():
    text = soak_section(SOAK)
    assert "Verdict: **passed**." in text
    assert "| issued twice (the sandboxes' own counts per request number) | **0** |" in text
    assert "| final states | ISSUED 4,999, MANUAL_REVIEW 1 |" in text
    assert "hold\nback while 400 applications are open (900 s of the 1,500 s of submitting" in text
    assert "| Ekuaibao pushes answered | result 200: 2,500, duplicate 200: 119, out_of_order 200: 121 |" in text
    assert "| recoveries in the applications' history | dispatch lease expired 449, outcome unknown 297 |" in text
    assert "Smaller than" not in text


def test_any_application_issued_twice_lost_or_answered_5xx_fails_the_run():
    for figure in ("issued_twice", "lost", "server_errors"):
        bad = copy.deepcopy(SOAK) | {figure: 1}
        assert "Verdict: **FAILED**." in soak_section(bad), figure


def test_a_smaller_run_says_so():
    assert "**Smaller than the 10,000 `make soak` runs by default** (5,000 orders)." in soak_section(
        SOAK | {"orders": 5000}
    )
