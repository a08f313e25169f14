"""The PLC register map: one table that the Modbus server, the OPC UA server, the README and the
tests all read. A PLC program written against this table works with either protocol.

Modbus tables: coils are written by the PLC, discrete inputs and input registers are read by it.
OPC UA: one variable per row, named as the row, under the `PinInspect` object in our namespace
(`NAMESPACE_URI`); the coil rows are the writable ones.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

NAMESPACE_URI = "urn:pininspect:station"


class Table(enum.Enum):
    COIL = "coil"
    DISCRETE_INPUT = "discrete input"
    INPUT_REGISTER = "input register"

    @property
    def plc_writes(self) -> bool:
        return self is Table.COIL


class ResultCode(enum.IntEnum):
    OK = 0
    BENDNG = 1
    NUKENG = 2
    NO_RESULT = 3  # the cycle ended without a verdict; Fault and FaultCode say why


class FaultCode(enum.IntEnum):
    NONE = 0
    CAMERA = 1
    MODEL = 2
    ARCHIVE = 3
    OTHER = 4


@dataclass(frozen=True)
class Signal:
    table: Table
    address: int
    name: str
    meaning: str


SIGNALS: tuple[Signal, ...] = (
    Signal(Table.COIL, 0, "Trigger", "rising edge: inspect the next frame"),
    Signal(Table.COIL, 1, "Ack", "PLC has read the result"),
    Signal(Table.COIL, 2, "ResetCounters", "rising edge: reset the shift counters"),
    Signal(Table.DISCRETE_INPUT, 0, "Ready", "a trigger will be accepted"),
    Signal(Table.DISCRETE_INPUT, 1, "Busy", "a triggered inspection is running"),
    Signal(Table.DISCRETE_INPUT, 2, "ResultValid", "the result registers hold the latest result"),
    Signal(Table.DISCRETE_INPUT, 3, "OK", "the latest result is OK"),
    Signal(Table.DISCRETE_INPUT, 4, "NG", "the latest result is NG"),
    Signal(Table.DISCRETE_INPUT, 5, "Fault", "the station cannot inspect (camera, model)"),
    Signal(Table.DISCRETE_INPUT, 6, "Heartbeat", "toggles every 500 ms while the station runs"),
    Signal(Table.INPUT_REGISTER, 0, "Result", "0 OK, 1 BENDNG, 2 NUKENG, 3 no result"),
    Signal(Table.INPUT_REGISTER, 1, "Pin", "defective pin 1..27, 0 for OK"),
    Signal(Table.INPUT_REGISTER, 2, "Sequence", "counts results, +1 each, wraps at 65536"),
    Signal(Table.INPUT_REGISTER, 3, "Score", "top defect probability x 1000"),
    Signal(Table.INPUT_REGISTER, 4, "Latency", "trigger to result, 0.1 ms units"),
    Signal(Table.INPUT_REGISTER, 5, "FaultCode", "0 none, 1 camera, 2 model, 3 archive, 4 other"),
)

BY_NAME: dict[str, Signal] = {s.name: s for s in SIGNALS}
HEARTBEAT_S = 0.5


def in_table(table: Table) -> tuple[Signal, ...]:
    """The signals of one table in address order (addresses are contiguous from 0)."""
    return tuple(sorted((s for s in SIGNALS if s.table is table), key=lambda s: s.address))


def markdown_table() -> str:
    """The map as the README shows it (a test checks the README against this)."""
    rows = ["| table | address | name | meaning |", "|---|---|---|---|"]
    for s in SIGNALS:
        who = {Table.COIL: " (PLC writes)", Table.DISCRETE_INPUT: " (PLC reads)", Table.INPUT_REGISTER: " (PLC reads)"}
        rows.append(f"| {s.table.value}{who[s.table]} | {s.address} | {s.name} | {s.meaning} |")
    return "\n".join(rows)


def _check() -> None:
    for table in Table:
        if [s.address for s in in_table(table)] != list(range(len(in_table(table)))):
            raise AssertionError(f"register map: {table.value} addresses must run 0..n-1")
    if len(BY_NAME) != len(SIGNALS):
        raise AssertionError("register map: duplicate signal name")


_check()
