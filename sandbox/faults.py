"""Fault switches shared by the channel simulators.

A simulator asks :meth:`FaultInjector.decide` once per business request, passing the request's
stable number (e.g. Xunlian ``requisitionApplyNo``), and gets a :class:`Decision`. Where in its
handling it applies each fault is the simulator's business; the names and their contract are
shared so tests read the same for every channel:

=======================  ====================================================================
``latency``              sleep ``latency_ms``, then proceed normally. Composes with any other
                         fault (it is drawn independently of them).
``error_5xx``            answer HTTP 500, 502 or 503 *before* anything is issued.
``connection_reset``     close the socket with a TCP RST, no answer, *nothing issued*.
``reject``               a business rejection from the vendor, *nothing issued*.
``timeout_after_issue``  issue and count the invoice, then hold the connection for
                         ``timeout_ms`` and close it without an answer (the client's read
                         timeout fires first when it is shorter).
``malformed``            issue and count the invoice, then answer a body that is not valid JSON.
``wrong_amount``         issue and count an invoice whose totals are off by more than the
                         tolerance (``WRONG_AMOUNT_DELTA`` = 10.00 more on the tax-exclusive
                         amount, 0.60 more on the tax, first line too), answered normally.
``wrong_seller``         issue and count an invoice of another seller (``OTHER_SELLER_TAX_NUMBER``).
``wrong_type``           issue and count an invoice of another invoice type (:func:`other_type`
                         in the channel's own codes: special <-> normal).
``extra_invoice``        issue the invoice asked for and a second, different one (its own
                         number, same order) for the same request number: both counted; both
                         reported where the wire format carries several invoices (Kingdee,
                         Ekuaibao, partner), else the second only in the sandbox's records.
``reject_but_issue``     issue and count the invoice, then answer (or push) a refusal; later
                         queries of that request number report it issued where the channel
                         has a query.
=======================  ====================================================================

The last five are *wrong results*: the channel issues, so a hub that believes what it is told
records something other than what was asked (issue 12). Where a wire format has no place for a
field (Xunlian answers no seller or type), the wrong value is in the sandbox's own record
(``GET /_sandbox/issued/<no>`` or the like) and in the numbering it drives, not in the answer.

Two ways to switch them on:

- **by rate** (:meth:`FaultInjector.configure`): ``{"seed": 1, "rates": {"latency": 0.1,
  "error_5xx": 0.05, ...}, "latency_ms": 200, "timeout_ms": 3000}``. The RNG is
  ``random.Random(seed)``, so a run is reproducible given the order of requests. Every decision
  draws exactly three numbers (latency, fault, 5xx status) whatever the rates, so changing one
  rate does not reshuffle the rest of the stream. ``latency`` is drawn on its own; the other
  faults are mutually exclusive, picked from one draw in the order ``error_5xx``,
  ``connection_reset``, ``reject``, ``timeout_after_issue``, ``malformed``, so their rates must
  add up to at most 1. ``rates`` replaces the whole table: a fault it does not name gets 0.
- **per request number** (:meth:`FaultInjector.script`): ``{"<no>": ["timeout_after_issue",
  "ok"]}``. Each request carrying that number consumes the next entry, in order; while a request
  number has entries left, its requests ignore the rates. An entry is a fault name, ``"ok"`` (no
  fault), ``"error_500"`` / ``"error_502"`` / ``"error_503"`` (a given status), or a list of names
  to combine ``latency`` with one other fault (``["latency", "malformed"]``). Scripting a number
  replaces what was left of its list; an empty list removes it.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

LATENCY = "latency"
ERROR_5XX = "error_5xx"
CONNECTION_RESET = "connection_reset"
REJECT = "reject"
TIMEOUT_AFTER_ISSUE = "timeout_after_issue"
MALFORMED = "malformed"
WRONG_AMOUNT = "wrong_amount"
WRONG_SELLER = "wrong_seller"
WRONG_TYPE = "wrong_type"
EXTRA_INVOICE = "extra_invoice"
REJECT_BUT_ISSUE = "reject_but_issue"
OK = "ok"

#: Mutually exclusive faults, in the order the rate draw walks them.
#: The wrong-result faults come last, so configurations that do not name them draw as before.
WRONG_RESULTS: tuple[str, ...] = (WRONG_AMOUNT, WRONG_SELLER, WRONG_TYPE, EXTRA_INVOICE, REJECT_BUT_ISSUE)
EXCLUSIVE_FAULTS: tuple[str, ...] = (
    ERROR_5XX,
    CONNECTION_RESET,
    REJECT,
    TIMEOUT_AFTER_ISSUE,
    MALFORMED,
    *WRONG_RESULTS,
)
RATE_FAULTS: tuple[str, ...] = (LATENCY, *EXCLUSIVE_FAULTS)
#: Faults that leave nothing issued; the others spoil the answer after issuing.
BEFORE_ISSUE: frozenset[str] = frozenset({ERROR_5XX, CONNECTION_RESET, REJECT})
ERROR_STATUSES: tuple[int, ...] = (500, 502, 503)
_EXPLICIT_STATUS = {f"error_{code}": code for code in ERROR_STATUSES}

#: What ``wrong_amount`` adds: far beyond every tolerance (0.01 per amount, 0.06 per line tax, 1.27 per
#: invoice's tax; docs/rules.md section 4), so no check may pass it.
WRONG_AMOUNT_DELTA = Decimal("10.00")
WRONG_TAX_DELTA = Decimal("0.60")
#: The seller ``wrong_seller`` issues for: a well-formed unified social credit code no sample uses.
OTHER_SELLER_TAX_NUMBER = "91310000MA1FL0WR0N"
OTHER_SELLER_NAME = "沙箱错开销方有限公司"

DEFAULT_LATENCY_MS = 200
DEFAULT_TIMEOUT_MS = 3000
_MAX_MS = 600_000


class FaultConfigError(ValueError):
    """A fault configuration or script that cannot be applied (the simulator answers 400)."""


@dataclass(frozen=True)
class Decision:
    """What to do to one request."""

    latency: bool = False
    fault: str | None = None  # one of EXCLUSIVE_FAULTS, or None
    status: int | None = None  # HTTP status for ERROR_5XX
    scripted: bool = False

    @property
    def before_issue(self) -> bool:
        return self.fault in BEFORE_ISSUE

    @property
    def after_issue(self) -> bool:
        return self.fault in (TIMEOUT_AFTER_ISSUE, MALFORMED)

    @property
    def wrong_result(self) -> bool:
        return self.fault in WRONG_RESULTS

    def describe(self) -> list[str]:
        names = [LATENCY] if self.latency else []
        if self.fault == ERROR_5XX:
            names.append(f"error_{self.status}")
        elif self.fault:
            names.append(self.fault)
        return names or [OK]


def _parse_entry(entry: Any) -> Decision:
    names = [entry] if isinstance(entry, str) else entry
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise FaultConfigError(f"fault entry must be a name or a non-empty list of names, got {entry!r}")
    latency = False
    fault: str | None = None
    status: int | None = None
    for name in names:
        if name == OK:
            continue
        if name == LATENCY:
            latency = True
            continue
        if name in _EXPLICIT_STATUS:
            this, this_status = ERROR_5XX, _EXPLICIT_STATUS[name]
        elif name in EXCLUSIVE_FAULTS:
            this, this_status = name, None
        else:
            known = ", ".join([*RATE_FAULTS, *_EXPLICIT_STATUS, OK])
            raise FaultConfigError(f"unknown fault {name!r} (known: {known})")
        if fault is not None:
            raise FaultConfigError(f"fault entry {entry!r} combines {fault!r} and {this!r}; only latency combines")
        fault, status = this, this_status
    return Decision(latency=latency, fault=fault, status=status, scripted=True)


def _milliseconds(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= _MAX_MS:
        raise FaultConfigError(f"{name} must be a number of milliseconds in 0..{_MAX_MS}, got {value!r}")
    return int(value)


class FaultInjector:
    """Thread-safe fault switches: rates with a seeded RNG, plus per-request-number scripts."""

    def __init__(
        self, seed: int = 0, latency_ms: int = DEFAULT_LATENCY_MS, timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> None:
        self._lock = threading.Lock()
        self._defaults = (seed, latency_ms, timeout_ms)
        self.reset()

    def reset(self) -> None:
        """Back to the constructor's settings: all rates 0, no scripts, RNG reseeded."""
        seed, latency_ms, timeout_ms = self._defaults
        with self._lock:
            self._seed = seed
            self._rng = random.Random(seed)
            self._rates = dict.fromkeys(RATE_FAULTS, 0.0)
            self._latency_ms = latency_ms
            self._timeout_ms = timeout_ms
            self._scripts: dict[str, deque[Decision]] = {}

    # -- configuration ---------------------------------------------------------------------------

    def configure(self, config: Mapping[str, Any]) -> None:
        """Apply ``seed`` / ``rates`` / ``latency_ms`` / ``timeout_ms``; all or nothing."""
        unknown = set(config) - {"seed", "rates", "latency_ms", "timeout_ms"}
        if unknown:
            raise FaultConfigError(f"unknown config keys: {sorted(unknown)}")
        seed = config.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise FaultConfigError(f"seed must be an integer, got {seed!r}")
        rates = None
        if "rates" in config:
            given = config["rates"]
            if not isinstance(given, Mapping):
                raise FaultConfigError("rates must be an object of fault name -> probability")
            rates = dict.fromkeys(RATE_FAULTS, 0.0)
            for name, rate in given.items():
                if name not in rates:
                    raise FaultConfigError(f"unknown fault {name!r} in rates (known: {', '.join(RATE_FAULTS)})")
                if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                    raise FaultConfigError(f"rate of {name} must be a number in 0..1, got {rate!r}")
                rates[name] = float(rate)
            exclusive = sum(rates[name] for name in EXCLUSIVE_FAULTS)
            if exclusive > 1 + 1e-9:
                raise FaultConfigError(
                    f"rates of {', '.join(EXCLUSIVE_FAULTS)} add up to {exclusive:g}; they are exclusive, so at most 1"
                )
        latency_ms = _milliseconds(config["latency_ms"], "latency_ms") if "latency_ms" in config else None
        timeout_ms = _milliseconds(config["timeout_ms"], "timeout_ms") if "timeout_ms" in config else None
        with self._lock:
            if seed is not None:
                self._seed = seed
                self._rng = random.Random(seed)
            if rates is not None:
                self._rates = rates
            if latency_ms is not None:
                self._latency_ms = latency_ms
            if timeout_ms is not None:
                self._timeout_ms = timeout_ms

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "seed": self._seed,
                "rates": dict(self._rates),
                "latency_ms": self._latency_ms,
                "timeout_ms": self._timeout_ms,
            }

    def script(self, plan: Mapping[str, Any]) -> None:
        """``{"<request no>": [entry, ...]}``: replace those numbers' remaining entries; all or nothing."""
        if not isinstance(plan, Mapping):
            raise FaultConfigError("faults must be an object of request number -> list of faults")
        parsed: dict[str, deque[Decision]] = {}
        for key, entries in plan.items():
            if not isinstance(entries, list):
                raise FaultConfigError(f"faults for {key!r} must be a list, got {entries!r}")
            parsed[str(key)] = deque(_parse_entry(entry) for entry in entries)
        with self._lock:
            for key, queue in parsed.items():
                if queue:
                    self._scripts[key] = queue
                else:
                    self._scripts.pop(key, None)

    def scripts(self) -> dict[str, list[list[str]]]:
        """What is left of each request number's script, as lists of names."""
        with self._lock:
            return {key: [d.describe() for d in queue] for key, queue in self._scripts.items()}

    @property
    def latency_seconds(self) -> float:
        with self._lock:
            return self._latency_ms / 1000

    @property
    def timeout_seconds(self) -> float:
        with self._lock:
            return self._timeout_ms / 1000

    # -- per request -----------------------------------------------------------------------------

    def decide(self, key: str | None, *aliases: str) -> Decision:
        """The faults for one request carrying request number ``key`` (None when it has none). A script
        may also be keyed by an alias the sandbox derives from the request's content (e.g. ``note:<its
        remark>``): request numbers are drawn at random by the hub, so a client scripting a fault before
        submitting names the order by what it sends instead."""
        with self._lock:
            u_latency, u_fault, u_status = self._rng.random(), self._rng.random(), self._rng.random()
            key = next((k for k in (key, *aliases) if k is not None and self._scripts.get(k)), key)
            queue = self._scripts.get(key) if key is not None else None
            if queue:
                decision = queue.popleft()
                if not queue:
                    del self._scripts[key]
                if decision.fault == ERROR_5XX and decision.status is None:
                    decision = Decision(
                        decision.latency, ERROR_5XX, ERROR_STATUSES[int(u_status * len(ERROR_STATUSES))], True
                    )
                return decision
            latency = u_latency < self._rates[LATENCY]
            edge = 0.0
            for name in EXCLUSIVE_FAULTS:
                edge += self._rates[name]
                if u_fault < edge:
                    status = ERROR_STATUSES[int(u_status * len(ERROR_STATUSES))] if name == ERROR_5XX else None
                    return Decision(latency=latency, fault=name, status=status)
            return Decision(latency=latency)


# -- socket helpers for http.server handlers -------------------------------------------------------


def abort_connection(sock: socket.socket, rfile: Any = None) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0) instead of an orderly FIN.

    ``rfile`` (the handler's ``makefile`` reader) holds a reference that would defer the real close;
    it is closed first.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    for closable in (rfile, sock):
        if closable is not None:
            try:
                closable.close()
            except OSError:
                pass


def other_type(code: str, types: Mapping[str, str]) -> str:
    """``wrong_type``'s invoice type: ``types`` maps each of a channel's codes to the code issued
    instead (special <-> normal of the same medium); a code it lacks gets the first other one."""
    if code in types:
        return types[code]
    return next(c for c in types if c != code)


def known_fault_names() -> Iterable[str]:
    return (*RATE_FAULTS, *_EXPLICIT_STATUS, OK)
