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


class AccessLog:
    """Collects access lines and logs them in one call per event-loop turn."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._lines: list[str] = []

    def add(self, client: str, method: str, path: str, status: int, seconds: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
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
