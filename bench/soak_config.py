"""The soak's settings (bench.soak runs them, bench.soak_oracle checks against them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class SoakConfig:
    orders: int = 10_000
    seed: int = 1
    clients: int = 8  # concurrent business-system clients submitting orders
    dispatchers: int = 3  # dispatch "containers" taking from the queue at once
    error_5xx: float = 0.05
    timeout_after_issue: float = 0.02
    duplicate_callbacks: float = 0.05
    out_of_order_callbacks: float = 0.05
    crash_rate: float = 0.02  # per step boundary
    kill_share: float = 0.5  # of the crashes, those that kill the whole invocation
    repeat_rate: float = 0.02  # orders sent twice (the same body: 200, nothing stored twice)
    read_rate: float = 0.05  # orders read back right after they were submitted
    lease_seconds: int = 8
    visibility_seconds: int = 15
    schedule_seconds: float = 5.0  # the poller's period (the local run's default)
    channel_timeout_seconds: float = 1.0  # the hub's read timeout towards the sandboxes
    sandbox_timeout_ms: int = 1500  # how long a "timeout after issue" holds the connection
    drain_seconds: float = 1800  # give up waiting for final states after this long
    # The clients hold back while this many applications are open. moto's SQS receive and delete and
    # its index queries walk every message and item, so an unbounded backlog makes each step slower
    # the longer it grows; the 10,000-order run never drained without this. A business system
    # sending 10,000 orders at once meets the same cap in AWS only as Lambda concurrency.
    max_open: int = 400
    quiet: bool = True  # the functions' own log lines: errors only
    state_dir: Path | None = None
