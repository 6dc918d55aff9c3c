"""What a refused store write means to its caller: the domain errors the store raises.

A conditional write whose condition fails (base.conditional) becomes one of these; the use cases
catch them by name, never a DynamoDB error.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fapiao_hub.infra.store.records import StoredApplication


class ApplicationExists(Exception):
    """A conditional create found an application under the same key."""

    def __init__(self, existing: StoredApplication):
        super().__init__(existing.key)
        self.existing = existing


class IllegalTransition(Exception):
    """A transition the lifecycle does not allow (state moves forward only)."""


class StaleWrite(Exception):
    """A conditional update lost: the application moved on (another writer, a newer state)."""


class RedLimitExceeded(Exception):
    """A red application asks for more than its blue invoice has left to reverse."""

    def __init__(self, remaining_amount: Decimal, remaining_tax: Decimal):
        super().__init__(f"left to reverse: {remaining_amount} + tax {remaining_tax}")
        self.remaining_amount = remaining_amount
        self.remaining_tax = remaining_tax


class BlueInvoiceUnknown(Exception):
    """No blue invoice under that key that the red application's business system and seller own.

    Deliberately one answer for "not there" and "someone else's": a tenant learns nothing of another's.
    """


class BlueInvoiceTypeDiffers(Exception):
    """The owner's blue invoice is of a type the red application may not reverse (docs/rules.md section 4)."""

    def __init__(self, blue_invoice_type: str):
        super().__init__(blue_invoice_type)
        self.blue_invoice_type = blue_invoice_type


class InvoiceNumberTaken(Exception):
    """A channel reported an invoice number the hub recorded for another application.

    ``args[0]``: the invoice keys; ``holders``: invoice key -> the application that holds it."""

    def __init__(self, keys: list[str], holders: dict[str, str] | None = None):
        super().__init__(keys)
        self.holders = holders or {}


class InvalidCursor(ValueError):
    """A listing cursor that is not one this query handed out."""
