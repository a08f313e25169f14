"""What both PLC servers share: an asyncio loop on a thread of its own, started and stopped from
the station's thread, and the errors that say why a server cannot listen."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading

from edge_app.plc.handshake import Handshake

log = logging.getLogger(__name__)


class PlcServerError(RuntimeError):
    """The PLC server cannot run (port in use, bad address); the message names the setting."""


def why_not_listening(host: str, port: int, e: Exception) -> str:
    """The OS's reason, found by trying the bind ourselves (pymodbus only says it could not)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as os_err:
        return os_err.strerror or str(os_err)
    return str(e) or type(e).__name__


class ThreadedServer:
    """A server over the handshake whose `_serve` coroutine runs on its own event loop and
    thread. `_serve` sets `ready` once it listens, or appends why not to `failure` first."""

    protocol = ""
    start_timeout_s = 10.0

    def __init__(self, handshake: Handshake, host: str, port: int):
        self.hs, self.host, self.port = handshake, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        raise NotImplementedError

    async def _serve(self, ready: threading.Event, failure: list[str]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def start(self, timeout: float | None = None) -> None:
        """Listen, or raise PlcServerError saying why (port in use...)."""
        ready = threading.Event()
        failure: list[str] = []
        name = f"pininspect-{self.protocol}"
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name=name, daemon=True)
        self._thread.start()
        if not ready.wait(self.start_timeout_s if timeout is None else timeout):
            failure.append("the server did not start in time")
        if failure:
            self.close()
            raise PlcServerError(f"plc_host/plc_port: cannot listen on {self.host}:{self.port} ({failure[0]})")
        self.hs.endpoint = self.describe()

    def _run(self, ready: threading.Event, failure: list[str]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready, failure))
        except Exception as e:
            if not ready.is_set():
                failure.append(str(e) or type(e).__name__)
                ready.set()
            else:
                log.exception("%s server", self.protocol)
        finally:
            loop.close()
