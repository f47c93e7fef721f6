"""Access log: one line per request, handed to ``logging`` once per event-loop turn.

A ``logging`` call costs about 25 us (caller lookup, LogRecord, handler lock, a write): as much as the rest of
a webhook request. So lines are formatted here (about 1 us) and every line finished in one turn of the event
loop goes out in a single ``logging`` call, one text line per request. Nothing waits for a timer: the batch is
written at the end of the same turn. Lines hold method, path, status and duration only, never a query string,
a header or a body: paths carry no secret (a webhook URL holds the connection id; its secret signs, it is not
in the URL).
"""

from __future__ import annotations

import asyncio
import logging

_ESCAPES = {c: f"\\x{c:02x}" for c in range(0x20)} | {0x7F: "\\x7f", ord('"'): '\\"', ord("\\"): "\\\\"}


def printable(text: str) -> str:
    """``text`` safe for one log line: control characters (a newline from ``%0a``, terminal escape codes),
    quotes and backslashes escaped, so a path can neither forge a line nor drive an operator's terminal."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(_ESCAPES.get(ord(c), c) if c.isprintable() or ord(c) < 0x80 else f"\\u{ord(c):04x}" for c in text)


class AccessLog:
    """Collects access lines and logs them in one call per event-loop turn."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lines: list[str] = []

    def add(self, client: str, method: str, path: str, status: int, seconds: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        path = printable(path)
        if not self._lines:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (cannot happen inside a request); write at once
                self._lines.append(f'{client} "{method} {path}" {status} {seconds * 1000:.1f}ms')
                self.flush()
                return
        self._lines.append(f'{client} "{method} {path}" {status} {seconds * 1000:.1f}ms')

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self.logger.info("%s", "\n".join(lines))
