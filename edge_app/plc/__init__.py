"""The station on the line: a PLC triggers each inspection and reads OK/NG back.

`registers` is the signal map, `handshake` the protocol-free state machine, `modbus` and `opcua`
the two servers over it. `PlcLink` is what the station and the headless run hold: the handshake
plus the server the settings ask for.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from edge_app.events import Result, Status, Trigger

PROTOCOLS: tuple[str, ...] = ("modbus", "opcua")
DEFAULT_PORTS = {"modbus": 5020, "opcua": 4840}
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def check_host(name: str, value: Any) -> str:
    """An IP address or a host name to listen on, else ValueError naming the setting."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected an IP address or host name, got {value!r}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value) or value.replace(".", "").isdigit():
            raise ValueError(f"{name}: {value!r} is not an IP address or host name") from None
    return value


def parse_plc(text: str) -> dict[str, Any]:
    """'modbus[:HOST[:PORT]]' | 'opcua[:HOST[:PORT]]' -> the StationConfig fields it sets
    (plc, and plc_host / plc_port when given); ValueError naming the setting when malformed."""
    proto, _, rest = text.strip().partition(":")
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise ValueError(f"plc: {text!r} is not modbus[:HOST[:PORT]] or opcua[:HOST[:PORT]]")
    out: dict[str, Any] = {"plc": proto}
    if rest:
        host, sep, port = rest.rpartition(":")
        if not sep:  # 'modbus:HOST' without a port
            host, port = rest, ""
        if host:
            out["plc_host"] = check_host("plc_host", host)
        if port or sep:
            if not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"plc_port: {port!r} is not a port number (1..65535)")
            out["plc_port"] = int(port)
    return out


def port_of(cfg: Any) -> int:
    return int(cfg.plc_port) or DEFAULT_PORTS[cfg.plc]


class PlcLink:
    """The handshake and its server, wired to a station's trigger and counters."""

    def __init__(self, cfg: Any, trigger: Callable[[str], Trigger | None], reset_counters: Callable[[], None]):
        from edge_app.plc.handshake import Handshake

        self.cfg = cfg
        self.handshake = Handshake(lambda: trigger("plc"), reset_counters)
        self.server: Any
        if cfg.plc == "modbus":
            from edge_app.plc.modbus import ModbusServer

            self.server = ModbusServer(self.handshake, cfg.plc_host, port_of(cfg), cfg.plc_unit)
        elif cfg.plc == "opcua":
            from edge_app.plc.opcua import OpcUaServer

            self.server = OpcUaServer(self.handshake, cfg.plc_host, port_of(cfg))
        else:
            raise ValueError(f"plc: {cfg.plc!r} is not one of {', '.join(PROTOCOLS)}")

    def start(self) -> None:
        """Listen (raises edge_app.plc.serving.PlcServerError naming plc_port when it cannot)."""
        self.server.start()
        self.handshake.start()

    def close(self) -> None:
        self.server.close()
        self.handshake.close()

    def describe(self) -> str:
        return str(self.server.describe())

    # the station's callbacks
    def on_result(self, r: Result) -> int | None:
        return self.handshake.on_result(r)

    def on_trigger_failed(self, t: Trigger, kind: str, msg: str) -> int | None:
        return self.handshake.on_trigger_failed(t, kind, msg)

    def on_status(self, st: Status) -> None:
        self.handshake.set_condition(st)

    def on_archive(self, msg: str) -> None:
        self.handshake.set_archive(msg)

    def link(self) -> dict[str, Any]:
        return self.handshake.link()
