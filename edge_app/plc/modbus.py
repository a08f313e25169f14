"""Modbus TCP server (pymodbus) over the handshake: the station is the server the PLC polls.

The handshake's image is the truth; the pymodbus datastore is refreshed from it on every read and
every coil write is handed to it, so a PLC never sees a half-written result (the image changes
under one lock). Runs its own asyncio loop on a thread; `close` stops it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from edge_app.plc.handshake import Handshake
from edge_app.plc.registers import Table, in_table
from edge_app.plc.serving import ThreadedServer, why_not_listening

log = logging.getLogger(__name__)
_TABLE_OF_FC = {1: Table.COIL, 5: Table.COIL, 15: Table.COIL, 2: Table.DISCRETE_INPUT, 4: Table.INPUT_REGISTER}


def _bits(handshake_image: dict[str, int], table: Table) -> list[int]:
    bits = [bool(handshake_image[s.name]) for s in in_table(table)]
    bits += [False] * (-len(bits) % 16)
    return SimUtils.bitsToRegisters(bits)


class ModbusServer(ThreadedServer):
    protocol = "modbus"

    def __init__(self, handshake: Handshake, host: str = "0.0.0.0", port: int = 5020, unit: int = 1):
        super().__init__(handshake, host, port)
        self.unit = unit
        self._server: ModbusTcpServer | None = None
        self._peers: dict[int, str] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"Modbus TCP {self.host}:{self.port} unit {self.unit}"

    # -- the datastore: every access goes through the handshake ---------------------------------

    async def _action(
        self, fc: int, start: int, address: int, count: int, registers: list[int], values: Any
    ) -> ExcCodes | None:
        table = _TABLE_OF_FC.get(fc)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if values is not None and table is Table.COIL:
            names = {s.address: s.name for s in in_table(Table.COIL)}
            for i, v in enumerate(values):
                if address + i in names:
                    self.hs.write(names[address + i], bool(v))
        image = self.hs.snapshot()
        if table is Table.INPUT_REGISTER:
            regs = [image[s.name] for s in in_table(table)]
        else:
            regs = _bits(image, table)
        registers[: len(regs)] = regs
        return None

    def _device(self) -> SimDevice:
        def bits(table: Table) -> list[SimData]:
            return [SimData(0, count=len(in_table(table)), values=False, datatype=DataType.BITS)]

        regs = [SimData(0, count=len(in_table(Table.INPUT_REGISTER)), values=0, datatype=DataType.REGISTERS)]
        unused = [SimData(0, count=1, values=0, datatype=DataType.INVALID)]
        return SimDevice(
            self.unit, simdata=(bits(Table.COIL), bits(Table.DISCRETE_INPUT), unused, regs), action=self._action
        )

    # -- connections --------------------------------------------------------------------------

    def _connected(self, handler: Any, peer: Any) -> None:
        with self._lock:
            self._peers[id(handler)] = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
            self.hs.clients = sorted(self._peers.values())
        log.info("PLC connected from %s", self._peers[id(handler)])

    def _disconnected(self, handler: Any) -> None:
        with self._lock:
            peer = self._peers.pop(id(handler), None)
            self.hs.clients = sorted(self._peers.values())
        if peer:
            log.info("PLC %s disconnected", peer)

    # -- lifetime (start: ThreadedServer) -----------------------------------------------------

    async def _serve(self, ready: threading.Event, failure: list[str]) -> None:
        owner = self

        class Handler(ServerRequestHandler):
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                owner._connected(self, transport.get_extra_info("peername"))

            def connection_lost(self, exc: Exception | None) -> None:
                owner._disconnected(self)
                super().connection_lost(exc)

        class Server(ModbusTcpServer):
            def callback_new_connection(self) -> ServerRequestHandler:
                return Handler(self, self.trace_packet, self.trace_pdu, self.trace_connect)

        try:
            server = self._server = Server(self._device(), address=(self.host, self.port))
            await server.serve_forever(background=True)
        except Exception as e:  # pymodbus says RuntimeError("Could not start listen") for a port in use
            failure.append(why_not_listening(self.host, self.port, e))
            ready.set()
            return
        ready.set()
        try:
            await server.serving
        finally:  # however serving ended, the listener and every connection close on this loop
            await server.shutdown()

    def close(self) -> None:
        """End `_serve`, which shuts the server down on its own loop: nothing is left for a loop that
        is ending to drop (a shutdown coroutine made here could be, and never run)."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            try:
                loop.call_soon_threadsafe(_end_serving, server)
            except RuntimeError:  # the loop has closed: _serve has ended and shut the server down
                pass
        if self._thread is not None:
            self._thread.join(5)


def _end_serving(server: Any) -> None:
    if not server.serving.done():
        server.serving.set_result(True)
