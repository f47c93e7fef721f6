"""The one exception a handler raises to answer with an error status."""

from __future__ import annotations


class HttpError(Exception):
    """Answer ``status`` with a short JSON message.

    ``quarantine`` carries the raw bytes of an authenticated request that we refuse (400), so nothing a known
    sender posted is ever lost; unauthenticated requests never set it.
    """

    def __init__(
        self, status: int, code: str, message: str, *, quarantine: bytes | None = None, connection_id: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.quarantine = quarantine
        self.connection_id = connection_id


def too_large(message: str) -> HttpError:
    return HttpError(413, "too_large", message)


def unauthorized(message: str) -> HttpError:
    return HttpError(401, "unauthorized", message)
