"""Reading JSON without changing it: the exact text of each event is what the warehouse keeps.

Re-serializing a parsed event is not exact: orjson turns integers over 64 bits into floats, and any parser loses
digits of long decimals (``1.0000000000000001``). So events are parsed only to be validated, and the stored
payload is always a slice of the bytes that arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson

_decoder = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def parse(raw: bytes | str) -> Any:
    """Parse for validation only (the stored bytes stay exact): orjson, or the stdlib for what orjson refuses.

    orjson rejects some JSON that Segment's libraries can emit, such as lone UTF-16 surrogates in strings.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise NotJSON(f"not JSON: {error}") from None


class NotJSON(ValueError):
    """The text is not JSON; the message says where."""


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
