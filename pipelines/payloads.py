"""JSON in and out without losing a value: the exact text of each event is what the warehouse keeps.

Re-serializing a parsed event is not exact: orjson silently turns integers over 64 bits into floats on the way in
(and refuses them on the way out), any parser loses digits of long decimals (``1.0000000000000001``), and the
stdlib accepts ``NaN``/``Infinity``, which are not JSON. So events are parsed only to be validated, stored bytes
are slices of what arrived where we have them, and what we must serialize (Tracking API items we amend) goes
through :func:`dumps`, which keeps every integer exact.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import orjson

_decoder = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


class NotJSON(ValueError):
    """The bytes are not (strict, UTF-8) JSON; the message says why without quoting the body."""


_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19
"""19 digits in a row may exceed 64 bits. Digits inside strings also match: a false alarm only costs the slower
parser. (translate + find is ~10x faster than the regex ``\\d{19}``, which backtracks at every digit.)"""


def _may_hold_long_integer(data: bytes) -> bool:
    return data.translate(_DIGITS_AS_ZERO).find(_LONG_RUN) != -1


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


MAX_DEPTH = 254
"""Deepest nesting of arrays and objects accepted: what orjson can serialize again (it stops at 255), far
beyond any real event. An event nested 1,000 levels deep gets a 400 and quarantine, not a 500 that Segment's
clients retry forever."""

_KEY_END = re.compile(rb'"[ \t\r\n]*:')


def loads(data: bytes) -> Any:
    """Parse strict UTF-8 JSON with every integer exact, refusing what I-JSON (RFC 7493) refuses.

    Refused: invalid UTF-8, ``NaN``/``Infinity``, duplicate keys in an object (parsers disagree on which value
    wins: we would read the last and DuckDB the first), and nesting deeper than :data:`MAX_DEPTH`.
    """
    value = _parse(data)
    if isinstance(value, dict | list):
        _check_shape(data, value)
    return value


def _parse(data: bytes) -> Any:
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


def _check_shape(data: bytes, value: dict[str, Any] | list[Any]) -> None:
    """Depth and duplicate keys, cheaply (a fifth of the parse): the parsed value cannot show a duplicate, so
    the keys in the text are counted against the keys orjson writes back. Each key ends with ``":`` in
    orjson's output, and with ``"``, optional whitespace and ``:`` in the text; a quote inside a string is
    ``\\"`` in both, so the counts differ only if a key was lost to a duplicate or a string holds ``\\":``.
    Then, or when the fast path cannot decide, an exact second parse does."""
    try:
        written = orjson.dumps(value)
    except orjson.JSONEncodeError:  # too deep, an integer over 64 bits or a lone surrogate
        _check_exactly(data, value)
        return
    if b"\\u" in data and b"\\u0022" in data.lower():  # a quote written as an escape is not counted in the text
        _check_exactly(data, value)
        return
    if any(pair in data for pair in (b'" ', b'"\n', b'"\r', b'"\t')):
        in_text = len(_KEY_END.findall(data))
    else:  # compact JSON: a plain count finds every key
        in_text = data.count(b'":')
    if in_text != written.count(b'":'):
        _check_exactly(data, value)


def _check_exactly(data: bytes, value: Any) -> None:
    level = [value]
    depth = 0
    while level:  # one level of nesting per pass
        depth += 1
        if depth > MAX_DEPTH:
            raise NotJSON(f"nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        for item in level:
            below.extend(item.values() if type(item) is dict else item)
        level = [v for v in below if type(v) is dict or type(v) is list]
    try:
        json.loads(data.decode("utf-8"), object_pairs_hook=_unique_pairs, parse_constant=_refuse_constant)
    except _DuplicateKey as error:
        key = str(error.args[0])
        raise NotJSON(f"duplicate key {key[:40]!r}" + ("..." if len(key) > 40 else "")) from None


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


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


def split_array(text: str) -> Iterator[tuple[str, Any]]:
    """Each element of a JSON array as (its exact source text, its parsed value).

    Used for webhook bodies and archive files that hold a JSON array: each element is stored as the bytes it
    had in the array, whitespace and number spelling included.
    """
    position = _skip(text, 0)
    if position >= len(text) or text[position] != "[":
        raise NotJSON("expected a JSON array")
    position = _skip(text, position + 1)
    if position < len(text) and text[position] == "]":
        _expect_end(text, position + 1)
        return
    while True:
        try:
            value, end = _decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise NotJSON(f"invalid JSON at character {error.pos}: {error.msg}") from None
        yield text[position:end], value
        position = _skip(text, end)
        if position >= len(text):
            raise NotJSON("unterminated JSON array")
        if text[position] == "]":
            _expect_end(text, position + 1)
            return
        if text[position] != ",":
            raise NotJSON(f"expected ',' or ']' at character {position}")
        position = _skip(text, position + 1)


def _skip(text: str, position: int) -> int:
    while position < len(text) and text[position] in _WHITESPACE:
        position += 1
    return position


def _expect_end(text: str, position: int) -> None:
    if _skip(text, position) != len(text):
        raise NotJSON(f"extra data after the array at character {position}")
