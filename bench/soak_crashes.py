"""The soak's dispatcher crashes: raised in-process at the dispatcher's step boundaries.

:class:`CrashInjector` wraps ``ApplicationStore.transition`` and ``Dispatcher._apply`` /
``Dispatcher.publish`` while installed, in dispatch invocations only (``local.runtime.current_function``);
no hub code is changed. Half the crashes fail one record (:class:`SimulatedCrash`: SQS delivers it
again), half the whole invocation (:class:`SimulatedKill`: like a Lambda timeout). It also notes the
Ekuaibao applications the dispatcher submitted, for the soak to hand over once each.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

BOUNDARIES = ("after-claim", "before-outcome-write", "before-event-publish")


class SimulatedCrash(RuntimeError):
    """A dispatcher died at a step boundary: its record fails and SQS delivers it again."""


class SimulatedKill(BaseException):
    """The whole dispatch invocation died (a Lambda timeout): every record of its batch comes back.

    A BaseException, so Powertools' batch processor does not catch it per record; the wrapper
    around the handler turns it into the failure of the invocation.
    """


class CrashInjector:
    """Raises simulated crashes at the dispatcher's step boundaries, in dispatch invocations only."""

    def __init__(self, rate: float, kill_share: float, seed: int, function_names: set[str]) -> None:
        self.rate = rate
        self.kill_share = kill_share
        self.function_names = function_names
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.tallies: collections.Counter[str] = collections.Counter()
        # channel -> (request number, application) handed over once each
        self._submitted: dict[str, list[tuple[str, Any]]] = collections.defaultdict(list)
        self._seen: set[str] = set()

    def note_submitted(self, channel: str | None, request_number: str | None, application: Any) -> None:
        with self._lock:
            if channel and request_number and request_number not in self._seen:
                self._seen.add(request_number)
                self._submitted[channel].append((request_number, application))

    def take_submitted(self, channel: str) -> list[tuple[str, Any]]:
        with self._lock:
            taken, self._submitted[channel] = self._submitted[channel], []
            return taken

    def _in_dispatch(self) -> bool:
        from local.runtime import current_function

        return current_function.get() in self.function_names

    def maybe(self, boundary: str) -> None:
        if self.rate <= 0 or not self._in_dispatch():
            return
        with self._lock:
            crash = self._rng.random() < self.rate
            kill = crash and self._rng.random() < self.kill_share
            if crash:
                self.tallies[f"{boundary} {'kill' if kill else 'crash'}"] += 1
        if kill:
            raise SimulatedKill(boundary)
        if crash:
            raise SimulatedCrash(boundary)

    @contextmanager
    def installed(self, poll_intervals: tuple[int, ...]) -> Iterator[None]:
        """Wrap the step boundaries (and shorten the dispatcher's poll intervals) while inside."""
        from fapiao_hub.domain.models import Status
        from fapiao_hub.infra.store import ApplicationStore
        from fapiao_hub.usecases.dispatch import Dispatcher

        injector = self
        transition, apply, publish, init = (
            ApplicationStore.transition,
            Dispatcher._apply,
            Dispatcher.publish,
            Dispatcher.__init__,
        )

        def crashing_transition(self: Any, stored: Any, to: Any, *args: Any, **kwargs: Any) -> Any:
            done = transition(self, stored, to, *args, **kwargs)
            if to is Status.SUBMITTED:
                injector.note_submitted(done.channel, done.request_number, done.application)
            if to is Status.DISPATCHING:
                injector.maybe("after-claim")
            return done

        def crashing_apply(self: Any, *args: Any, **kwargs: Any) -> Any:
            injector.maybe("before-outcome-write")
            return apply(self, *args, **kwargs)

        def crashing_publish(self: Any, stored: Any) -> Any:
            if stored.pending_event:
                injector.maybe("before-event-publish")
            return publish(self, stored)

        def quick_init(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self._policy = dataclasses.replace(self._policy, poll_intervals=poll_intervals)

        ApplicationStore.transition = crashing_transition  # type: ignore[method-assign]
        Dispatcher._apply = crashing_apply  # type: ignore[method-assign]
        Dispatcher.publish = crashing_publish  # type: ignore[method-assign]
        Dispatcher.__init__ = quick_init  # type: ignore[method-assign]
        try:
            yield
        finally:
            ApplicationStore.transition = transition  # type: ignore[method-assign]
            Dispatcher._apply = apply  # type: ignore[method-assign]
            Dispatcher.publish = publish  # type: ignore[method-assign]
            Dispatcher.__init__ = init  # type: ignore[method-assign]


def killable(handler: Callable[[Any, Any], Any], deliveries: collections.Counter[str]) -> Callable[[Any, Any], Any]:
    """A killed invocation fails as a whole (the SQS pump leaves the batch for redelivery)."""

    def invoke(event: Any, context: Any) -> Any:
        deliveries["invocations"] += 1
        deliveries["records"] += len(event.get("Records") or [])
        try:
            return handler(event, context)
        except SimulatedKill as kill:
            raise RuntimeError(f"simulated kill of the dispatch invocation ({kill})") from None

    return invoke


def not_simulated(record: logging.LogRecord) -> bool:
    """Drops the SQS pump's report of a simulated kill (expected; tallied instead)."""
    error = record.exc_info[1] if record.exc_info else None
    return not (isinstance(error, RuntimeError) and "simulated kill" in str(error))
