"""Run the receiver on a production ASGI server: uvicorn with httptools and uvloop.

Chosen by measurement against granian (bench/bench_receiver.py; figures in docs/receiver.md): granian's Rust
HTTP layer is faster on a bare 200, but on this app the two were within the noise of a shared machine, because
the time goes into our own per-event work and the fsync. What decided it:

- one process: with one worker, uvicorn serves in the process you started, so a supervisor's SIGTERM or
  SIGKILL reaches the server itself (granian always forks a worker, which outlives a killed parent and keeps the
  port);
- graceful shutdown: SIGTERM stops accepting, lets in-flight requests finish (up to 30 s), then runs the lifespan
  shutdown that closes the spool (tests/test_receiver_e2e.py checks it);
- uvicorn, httptools and uvloop are already the project's dependencies; granian is not.

uvicorn's httptools protocol is used through :class:`pipelines.receiver.guard.GuardedProtocol`, which adds what
it lacks against hostile clients: a header budget, read deadlines and a connection cap.
"""

from __future__ import annotations

import copy
from typing import Any

APP = "pipelines.receiver.app:create_app"
GRACEFUL_SHUTDOWN_SECONDS = 30
KEEP_ALIVE_SECONDS = 20


def log_config(access_log: bool = True) -> dict[str, Any]:
    """uvicorn's logging plus ours. uvicorn's own access log stays off: it prints query strings, ours never does."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["receiver_access"] = {"format": "%(message)s"}  # each line is complete already
    config["handlers"]["receiver_access"] = {
        "class": "logging.StreamHandler",
        "formatter": "receiver_access",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["pipelines"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["pipelines.receiver.access"] = {
        "handlers": ["receiver_access"],
        "level": "INFO" if access_log else "WARNING",
        "propagate": False,
    }
    return config


def serve(host: str, port: int, workers: int = 1, *, access_log: bool = True) -> None:
    """Serve until SIGINT/SIGTERM. Each worker process opens its own spool segment (lifespan startup)."""
    import uvicorn

    from pipelines.receiver.guard import GuardedProtocol

    uvicorn.run(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=GuardedProtocol,  # httptools with header, time and connection limits
        lifespan="on",
        access_log=False,
        log_config=log_config(access_log),
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
