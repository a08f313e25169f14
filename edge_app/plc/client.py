"""The PLC's side of the handshake, for commissioning without the PLC (edge_app.plc_sim) and for
the tests: a Modbus TCP client (pymodbus) and an OPC UA client (asyncua), both reading and writing
the signals of edge_app.plc.registers by name, and `cycle`, one handshake as a PLC program runs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edge_app.plc.registers import NAMESPACE_URI, SIGNALS, Table, in_table


class PlcClientError(RuntimeError):
    """The station did not answer as the handshake says (timeout, lost connection)."""


class ModbusPlc:
    def __init__(self, host: str, port: int = 5020, unit: int = 1, timeout_s: float = 3.0):
        from pymodbus.client import ModbusTcpClient

        self.unit = unit
        self.client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)
        if not self.client.connect():
            raise PlcClientError(f"no Modbus server at {host}:{port}")

    def _check(self, rr: Any) -> Any:
        if rr.isError():
            raise PlcClientError(f"Modbus error: {rr}")
        return rr

    def read(self) -> dict[str, int]:
        """Every signal the PLC reads (discrete inputs, then input registers: two requests)."""
        di, ir = in_table(Table.DISCRETE_INPUT), in_table(Table.INPUT_REGISTER)
        bits = self._check(self.client.read_discrete_inputs(0, count=len(di), device_id=self.unit)).bits
        regs = self._check(self.client.read_input_registers(0, count=len(ir), device_id=self.unit)).registers
        return {**{s.name: int(bits[s.address]) for s in di}, **{s.name: int(regs[s.address]) for s in ir}}

    def read_bits(self) -> dict[str, int]:
        di = in_table(Table.DISCRETE_INPUT)
        bits = self._check(self.client.read_discrete_inputs(0, count=len(di), device_id=self.unit)).bits
        return {s.name: int(bits[s.address]) for s in di}

    def write(self, **coils: bool) -> None:
        """Write coils in one request when they are adjacent (Trigger and Ack are)."""
        addr = {s.name: s.address for s in in_table(Table.COIL)}
        items = sorted((addr[name], bool(v)) for name, v in coils.items())
        if len(items) > 1 and [a for a, _ in items] == list(range(items[0][0], items[0][0] + len(items))):
            self._check(self.client.write_coils(items[0][0], [v for _, v in items], device_id=self.unit))
            return
        for a, v in items:
            self._check(self.client.write_coil(a, v, device_id=self.unit))

    def close(self) -> None:
        self.client.close()


class OpcUaPlc:
    def __init__(self, host: str, port: int = 4840, timeout_s: float = 5.0):
        from asyncua import ua
        from asyncua.sync import Client

        from edge_app.plc.opcua import node_id

        self.ua = ua
        self.client = Client(f"opc.tcp://{host}:{port}/", timeout=timeout_s)
        try:
            self.client.connect()
        except Exception as e:
            raise PlcClientError(f"no OPC UA server at opc.tcp://{host}:{port}/ ({e})") from None
        ns = self.client.get_namespace_index(NAMESPACE_URI)
        self.nodes = {s.name: self.client.get_node(node_id(ns, s.name)) for s in SIGNALS}
        self._read_names = [s.name for s in SIGNALS if not s.table.plc_writes]
        self._bit_names = [s.name for s in in_table(Table.DISCRETE_INPUT)]

    def read(self) -> dict[str, int]:
        values = self.client.read_values([self.nodes[n] for n in self._read_names])
        return {n: int(v) for n, v in zip(self._read_names, values, strict=True)}

    def read_bits(self) -> dict[str, int]:
        values = self.client.read_values([self.nodes[n] for n in self._bit_names])
        return {n: int(v) for n, v in zip(self._bit_names, values, strict=True)}

    def write(self, **coils: bool) -> None:
        ua = self.ua
        names = list(coils)
        values = [ua.DataValue(ua.Variant(bool(coils[n]), ua.VariantType.Boolean)) for n in names]
        self.client.write_values([self.nodes[n] for n in names], values)

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:  # the server is already gone
            pass


def connect(spec: str, unit: int = 1) -> ModbusPlc | OpcUaPlc:
    """A client for 'modbus[:HOST[:PORT]]' or 'opcua[:HOST[:PORT]]' (host default 127.0.0.1)."""
    from edge_app.plc import DEFAULT_PORTS, parse_plc

    fields = parse_plc(spec)
    proto = fields["plc"]
    host = fields.get("plc_host", "127.0.0.1")
    host = "127.0.0.1" if host == "0.0.0.0" else host
    port = fields.get("plc_port", DEFAULT_PORTS[proto])
    return ModbusPlc(host, port, unit) if proto == "modbus" else OpcUaPlc(host, port)


@dataclass
class Cycle:
    signals: dict[str, int]  # what the PLC read once ResultValid was set
    trigger_to_valid_ms: float  # as the PLC sees it: Trigger written to ResultValid read
    cycle_ms: float  # Trigger written to Ready again


def wait_for(plc: Any, name: str, value: int, timeout_s: float, poll_s: float = 0.0) -> dict[str, int]:
    deadline = time.perf_counter() + timeout_s
    while True:
        bits = plc.read_bits()
        if bits[name] == value:
            return bits
        if time.perf_counter() > deadline:
            raise PlcClientError(f"timeout: {name} did not become {value} within {timeout_s:g} s (read {bits})")
        if poll_s:
            time.sleep(poll_s)


def cycle(plc: Any, timeout_s: float = 5.0, poll_s: float = 0.0) -> Cycle:
    """One handshake: wait Ready, Trigger, wait ResultValid, read, Ack + clear Trigger, wait
    ResultValid cleared, clear Ack."""
    wait_for(plc, "Ready", 1, timeout_s, poll_s)
    t0 = time.perf_counter()
    plc.write(Trigger=True)
    wait_for(plc, "ResultValid", 1, timeout_s, poll_s)
    t1 = time.perf_counter()
    signals = plc.read()
    plc.write(Trigger=False, Ack=True)
    wait_for(plc, "ResultValid", 0, timeout_s, poll_s)
    plc.write(Ack=False)
    return Cycle(signals, (t1 - t0) * 1000.0, (time.perf_counter() - t0) * 1000.0)
