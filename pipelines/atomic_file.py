"""Replace a small file so that a reader, or the file after a crash, is the old content or the new, never half.

The records the jobs keep in the data folder (the connection registry, the last run, the last build's inputs,
which build the analysts' copy was made from) are all written this one way.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temp file in the same folder, created with its final mode, fsync'd, renamed over, folder fsync'd."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json_atomically(path: Path, value: Any, *, indent: int | None = None) -> None:
    write_atomically(path, (json.dumps(value, indent=indent) + "\n").encode())
