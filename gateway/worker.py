"""The gateway under gunicorn: ``--worker-class gateway.worker.GatewayWorker``.

gunicorn keeps doing what it does well (binding, forking one worker per core, restarting a
dead one, graceful stops); each worker runs uvloop and the gateway's own HTTP server
(gateway.server) on the sockets gunicorn bound. uvloop also spreads connections evenly over
the workers (with the default loop one worker took nearly all of them under load).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import uvloop
from gunicorn.workers import base

from gateway.app import Gateway
from gateway.messages import Request
from gateway.server import HttpServer

HEARTBEAT_SECONDS = 1.0


class GatewayWorker(base.Worker):  # type: ignore[misc]
    """Serves the ``Gateway`` that gunicorn's app target (``gateway.app:create_app()``) built."""

    def init_process(self) -> None:
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)
        super().init_process()

    def init_signals(self) -> None:
        # Through the loop, so a signal never interrupts a request half way.
        for sig, handler in (
            (signal.SIGTERM, self.handle_exit),
            (signal.SIGINT, self.handle_quit),
            (signal.SIGQUIT, self.handle_quit),
            (signal.SIGABRT, self.handle_abort),
            (signal.SIGUSR1, self.handle_usr1),
            (signal.SIGWINCH, self.handle_winch),
        ):
            self.loop.add_signal_handler(sig, handler, sig, None)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()
        sys.exit(0)

    async def _serve(self) -> None:
        gateway = self.wsgi
        if not isinstance(gateway, Gateway):
            raise RuntimeError(f"the app target must build a Gateway, not {gateway!r}")
        await gateway.start()
        server = HttpServer(gateway, self._access_log if self.cfg.accesslog else None)
        for listener in self.sockets:
            await server.listen(listener.sock)
        ppid = os.getppid()
        while self.alive and os.getppid() == ppid:
            self.notify()
            await asyncio.sleep(HEARTBEAT_SECONDS)
        await server.close(self.cfg.graceful_timeout * 0.9)
        await gateway.stop()

    def _access_log(self, request: Request, status: int) -> None:
        target = request.target.decode("latin-1")
        line = f'{request.peer} "{request.method} {target} HTTP/{request.version}" {status}'
        self.log.access_log.info(line)

    def handle_quit(self, sig: int, frame: Any) -> None:
        self.alive = False
