"""OPC UA server (asyncua) over the handshake, for plants that run OPC UA instead of Modbus.

One variable per signal of edge_app.plc.registers, named as the signal, under the object
`PinInspect` in our namespace (`NAMESPACE_URI`); node ids are `ns=<that namespace>;s=PinInspect.<Name>`.
Bits are Boolean, registers UInt16; the PLC-written ones (Trigger, Ack, ResetCounters) are writable.
A client write reaches the handshake at once (a server callback, no subscription delay); every
change the handshake makes is written back in order on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType

from edge_app.plc.handshake import Handshake
from edge_app.plc.registers import NAMESPACE_URI, SIGNALS, Table
from edge_app.plc.serving import ThreadedServer, why_not_listening

log = logging.getLogger(__name__)
OBJECT = "PinInspect"


def node_id(ns: int, name: str) -> ua.NodeId:
    return ua.NodeId.from_string(f"ns={ns};s={OBJECT}.{name}")


def _variant(name: str, value: int) -> ua.Variant:
    sig = next(s for s in SIGNALS if s.name == name)
    if sig.table is Table.INPUT_REGISTER:
        return ua.Variant(int(value), ua.VariantType.UInt16)
    return ua.Variant(bool(value), ua.VariantType.Boolean)


class OpcUaServer(ThreadedServer):
    protocol = "opcua"
    start_timeout_s = 30.0

    def __init__(self, handshake: Handshake, host: str = "0.0.0.0", port: int = 4840):
        super().__init__(handshake, host, port)
        self._stop: asyncio.Event | None = None
        self.ns = 0

    def describe(self) -> str:
        return f"OPC UA opc.tcp://{self.host}:{self.port} ({NAMESPACE_URI})"

    async def _serve(self, ready: threading.Event, failure: list[str]) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/")
        server.set_server_name("pininspect station")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = ns = await server.register_namespace(NAMESPACE_URI)
        obj_id = ua.NodeId.from_string(f"ns={ns};s={OBJECT}")
        obj = await server.nodes.objects.add_object(obj_id, ua.QualifiedName(OBJECT, ns))
        nodes: dict[str, Any] = {}
        image = self.hs.snapshot()
        for s in SIGNALS:
            initial = _variant(s.name, image[s.name])
            var = await obj.add_variable(node_id(ns, s.name), ua.QualifiedName(s.name, ns), initial)
            meaning = ua.DataValue(ua.Variant(ua.LocalizedText(s.meaning)))
            await var.write_attribute(ua.AttributeIds.Description, meaning)
            if s.table.plc_writes:
                await var.set_writable()
            nodes[s.name] = var
        by_id = {var.nodeid: name for name, var in nodes.items()}
        queue: asyncio.Queue[list[tuple[str, int]]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def on_write(event: Any, dispatcher: Any) -> None:
            # the callback also hears refused writes (a read-only signal): only the accepted ones count
            for wv, status in zip(event.request_params.NodesToWrite, event.response_params or [], strict=False):
                name = by_id.get(wv.NodeId)
                if name is not None and wv.AttributeId == ua.AttributeIds.Value and status.is_good():
                    self.hs.write(name, bool(wv.Value.Value.Value))

        server.subscribe_server_callback(CallbackType.PostWrite, on_write)
        try:
            await server.start()
        except OSError as e:
            failure.append(e.strerror or why_not_listening(self.host, self.port, e))
            ready.set()
            return

        def hand_over(changes: list[tuple[str, int]]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, changes)
            except RuntimeError:  # the server's loop closed (the station is stopping): nobody to tell
                pass

        self.hs.add_listener(hand_over)
        ready.set()
        try:
            while not self._stop.is_set():
                try:
                    changes = await asyncio.wait_for(queue.get(), 0.5)
                except asyncio.TimeoutError:
                    changes = []
                for name, value in changes:
                    await server.write_attribute_value(nodes[name].nodeid, ua.DataValue(_variant(name, value)))
                sessions = getattr(server.iserver, "_external_sessions", {}) or {}
                self.hs.clients = sorted(_peer(s.name) for s in list(sessions.values()))
        finally:
            await server.stop()

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and loop.is_running():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(10)


def _peer(name: Any) -> str:
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)
