"""Run the admin listener next to the receiver: a second uvicorn server on its own port, in a daemon thread of
the process `serve` started (the supervisor when there are several receiver workers), so it lives and dies with
the receiver and never shares its port or its app.

If the admin port is taken, the page is unavailable (logged) but the receiver keeps receiving: losing the view
must never cost events.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from pipelines.admin.app import AdminApp

log = logging.getLogger("pipelines.admin")


def start_in_thread(data_dir: Path, host: str, port: int) -> threading.Thread:
    import uvicorn

    config = uvicorn.Config(
        AdminApp(data_dir),
        host=host,
        port=port,
        loop="asyncio",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn exits this way when it cannot bind
            log.error("admin page unavailable: cannot listen on %s:%d (the receiver keeps running)", host, port)

    thread = threading.Thread(target=run, name="admin", daemon=True)
    thread.start()
    return thread
