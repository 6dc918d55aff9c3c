"""JSON at the hub's edges: money never passes through float on the way in, numbers stay numbers
on the way out."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any


class InvalidJson(ValueError):
    """A body that is not acceptable JSON (syntax, NaN/Infinity, nesting, huge integers)."""


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON with decimals as Decimal; NaN and Infinity are refused."""
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson("JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise InvalidJson("body is not valid UTF-8") from None
    except ValueError as error:  # JSONDecodeError, and int digits over Python's limit
        raise InvalidJson(f"malformed JSON: {error}") from None


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Emitted as a number whenever float's shortest repr is exactly the decimal's value
        # (always so for money: at most 12 integer digits and 2 decimals); otherwise as a string,
        # so no digit is ever lost.
        number = float(value)
        return number if Decimal(repr(number)) == value else str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="python")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def content_hash(value: Any) -> str:
    """SHA-256 of a JSON value's canonical form (key order and whitespace do not matter)."""
    canonical = json.dumps(value, default=str, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
