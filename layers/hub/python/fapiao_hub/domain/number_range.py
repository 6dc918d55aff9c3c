"""DynamoDB's number range: the one check for every number that comes from outside the hub.

DynamoDB keeps a number of magnitude 1E-130 .. 9.99...E+125 with at most 38 significant digits;
boto3 refuses anything else at write time with a decimal signal (Overflow, Underflow, Inexact,
Rounded, Clamped), and a write that raises is a 500. A channel or a business system may send any
JSON number, so each number is checked here before it can reach a write: intake refuses it (a 400
naming the field), a channel module records the field as unreadable (a finding, the result kept),
and the store keeps whatever still slips through as text (storable_tree), never a crashed write.
"""

from __future__ import annotations

from decimal import Context, Decimal, DecimalException
from typing import Any

from boto3.dynamodb.types import DYNAMODB_CONTEXT

SMALLEST = Decimal("1E-130")
LARGEST = Decimal("9.9999999999999999999999999999999999999E+125")
MAX_DIGITS = 38
RANGE_TEXT = "the range the hub can store: magnitude 1E-130 to 9.99E+125, at most 38 significant digits"
# For dropping trailing zeros (the result is compared with the value: a rounded one is refused).
_EXACT = Context(prec=5000, Emax=10**9, Emin=-(10**9))


def dynamo_number(value: Decimal | int) -> Decimal | None:
    """``value`` as DynamoDB keeps it exactly, or None when it cannot (out of range, too many digits,
    not finite). Trailing zeros are dropped only where the digits as written are too many (1.000...0)."""
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(value)
    except (TypeError, ValueError, DecimalException):
        return None
    if not number.is_finite():
        return None
    if _as_written_fits(number):
        return number if number.is_zero() or SMALLEST <= number.copy_abs() <= LARGEST else None
    if number.is_zero():  # 0E-400: zero all the same
        return Decimal(0)
    if not SMALLEST <= number.copy_abs() <= LARGEST:
        return None
    try:
        normalized = number.normalize(_EXACT)
    except DecimalException:
        return None
    # Only ever the same value with fewer trailing zeros, never a rounded one.
    return normalized if normalized == number and _as_written_fits(normalized) else None


def _as_written_fits(number: Decimal | int) -> bool:
    """boto3's own check (its serializer raises the same way)."""
    try:
        DYNAMODB_CONTEXT.create_decimal(number)
    except DecimalException:
        return False
    return True


def storable_tree(value: Any) -> Any:
    """An item with every number DynamoDB cannot keep turned into its text (the last line of defence:
    the readers mark such fields unreadable first). Numbers that fit, and everything else, unchanged."""
    if isinstance(value, dict):
        return {k: storable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_tree(v) for v in value]
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        number = dynamo_number(value)
        if number is None:
            return str(value)
        return value if _as_written_fits(value) else number
    return value
