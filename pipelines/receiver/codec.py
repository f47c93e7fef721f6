"""JSON in and out without losing a value.

orjson is fast but silently turns integers over 64 bits into floats on the way in and refuses them on the way
out, and the stdlib accepts ``NaN``/``Infinity``, which are not JSON. Events carry ids that can be long integers,
so: orjson when no number could be that long, the stdlib (strict about non-JSON constants) otherwise.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19
"""19 digits in a row may exceed 64 bits. Digits inside strings also match: a false alarm only costs the slower
parser. (translate + find is ~10x faster than the regex ``\\d{19}``, which backtracks at every digit.)"""


def _may_hold_long_integer(data: bytes) -> bool:
    return data.translate(_DIGITS_AS_ZERO).find(_LONG_RUN) != -1


class NotJSON(ValueError):
    """The bytes are not (strict, UTF-8) JSON; the message says why without quoting the body."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def loads(data: bytes) -> Any:
    """Parse strict UTF-8 JSON with every integer exact."""
    if not _may_hold_long_integer(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # orjson also refuses some valid JSON (lone surrogate escapes): the stdlib decides
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise NotJSON("nested too deeply") from None
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise NotJSON(type(error).__name__ if isinstance(error, UnicodeDecodeError) else str(error)) from None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; integers of any size stay exact."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer over 64 bits, or a lone surrogate in a string
        return _stdlib_dumps(value, sort_keys=False)


def canonical(value: Any) -> bytes:
    """Key-sorted JSON: equal events give equal bytes, whatever order their keys arrived in."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return _stdlib_dumps(value, sort_keys=True)


def _stdlib_dumps(value: Any, *, sort_keys: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, sort_keys=sort_keys)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8: escape it as JSON does
        return json.dumps(value, separators=(",", ":"), allow_nan=False, sort_keys=sort_keys).encode("ascii")
