"""Command-line flags made from a config dataclass: a field's help and flag are written once, on
the field (`option(...)` as its default), and `add_flags` / `from_args` make and read the flags.

    @dataclass
    class ExportConfig:
        eval_n: int = option(600, "rendered evaluation frames", "--eval-n")
        gate: bool = option(True, "write the bundle only if INT8 passes", "--no-gate")  # --no-gate sets False

A bool flag flips its field's default (`--reduce-range` sets True, `--no-gate` False); other flags
take a value of the default's type (or `parse`'s). The station's settings (edge_app.settings) add a
check and a dialog row to the same idea.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    help: str
    flag: str | None = None
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None  # str -> value; default: the default's type
    metavar: str | None = None
    show_default: bool = True  # append "(default: ...)" to the help
    bounds: tuple[float, float] | None = None  # a number's allowed range, checked by `check`


def option(
    default: Any,
    help: str,
    flag: str | None = None,
    choices: tuple[str, ...] = (),
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    show_default: bool = True,
    bounds: tuple[float, float] | None = None,
) -> Any:
    """A dataclass field whose default is `default` and whose flag is `flag` (None: no flag).
    `parse` may raise ValueError or RuntimeError: argparse then names the flag and the message."""
    meta = {"option": Option(help, flag, choices, parse, metavar, show_default, bounds)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def options(cls: type) -> dict[str, tuple[Option, Any]]:
    """{field name: (its Option, its default)} for the fields of `cls` made with `option`."""
    out = {}
    for f in dataclasses.fields(cls):
        opt = f.metadata.get("option")
        if opt is not None:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
            out[f.name] = (opt, default)
    return out


def add_flags(parser: argparse.ArgumentParser, cls: type, only_given: bool = False) -> None:
    """One flag per field of `cls` that has one. `only_given`: an absent flag reads as None (so a
    settings file's value stands), instead of the field's default."""
    for name, (opt, default) in options(cls).items():
        if not opt.flag:
            continue
        quiet = only_given or not opt.show_default or default is None or default in ("", [], {})
        shown = "" if quiet else " (default: %(default)s)"
        if isinstance(default, bool):
            parser.add_argument(
                opt.flag,
                dest=name,
                action="store_const",
                const=not default,
                default=None if only_given else default,
                help=opt.help.replace("%", "%%"),
            )
            continue
        kind = _typed(opt.parse) if opt.parse else (type(default) if default is not None else str)
        parser.add_argument(
            opt.flag,
            dest=name,
            type=kind,
            choices=opt.choices or None,
            default=None if only_given else default,
            metavar=opt.metavar,
            help=opt.help.replace("%", "%%")
            + (shown.replace("%(default)s", _shown(default)) if isinstance(default, list) else shown),
        )


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` with its errors as argparse's (a one-line usage error, not a traceback)."""

    def typed(text: str) -> Any:
        try:
            return parse(text)
        except (ValueError, RuntimeError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return typed


def _shown(default: list[Any]) -> str:
    return ",".join(map(str, default)).replace("%", "%%")


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` whose flags were given (with `only_given`), by name."""
    return {n: getattr(args, n) for n, (o, _) in options(cls).items() if o.flag and getattr(args, n) is not None}


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of `cls` from the parsed flags (fields without a flag keep their defaults)."""
    values = {n: getattr(args, n) for n, (o, _) in options(cls).items() if o.flag}
    return cls(**values, **extra)


# ---------------------------------------------------------------------------------------------
# Nested configs set by key (`--set data.n=2000`, a JSON file, a preset)


class _Dotted(dict):
    """The keys `--set a.b=1` gave under `a`: merged into a dict field `a`, where a whole dict
    (`--set 'a={...}'`, a JSON file) replaces it."""


def merge(base: Any, over: dict[str, Any], where: str = "") -> Any:
    """`base` (a dataclass instance, nested ones inside) with the values in `over` (nested dicts
    for nested configs). An unknown key, or a value of another type than the field's, is a
    ValueError naming the dotted key."""
    names = {f.name for f in dataclasses.fields(base)}
    hints = typing.get_type_hints(type(base))
    kw = {}
    for k, v in over.items():
        if k not in names:
            raise ValueError(f"{where}{k}: unknown setting (known: {', '.join(sorted(names))})")
        cur = getattr(base, k)
        if dataclasses.is_dataclass(cur) and isinstance(v, dict):
            kw[k] = merge(cur, v, f"{where}{k}.")
        elif isinstance(cur, dict) and isinstance(v, _Dotted):
            kw[k] = {**cur, **v}
        elif v is None and type(None) in typing.get_args(hints.get(k)):
            kw[k] = None  # an optional setting back to its "none" (`--set data.mix_n=null`)
        else:
            kw[k] = _typed_value(f"{where}{k}", cur, v)
    return dataclasses.replace(base, **kw)


def _typed_value(key: str, current: Any, value: Any) -> Any:
    """`value` where the field now holds `current`: same type (an int where a float is, a list
    for a list); a field that is None takes anything, and a list or dict field takes None."""
    if current is None or (value is None and not isinstance(current, (bool, int, float, str))):
        return value
    if isinstance(current, bool) or isinstance(value, bool):
        ok = isinstance(current, bool) and isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    elif dataclasses.is_dataclass(current):
        ok = False
    elif isinstance(current, str) and isinstance(value, int):
        ok, value = True, str(value)  # --set name=2024: a name, not a number
    else:
        ok = isinstance(value, type(current))
    if not ok:
        kind = "a dict of settings" if dataclasses.is_dataclass(current) else type(current).__name__
        raise ValueError(f"{key}: expected {kind} (like {current!r}), got {value!r}")
    return value


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'}; each value read as JSON, else as text."""
    over: dict[str, Any] = {}
    for text in sets:
        key, eq, val = text.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. --set epochs=4 or --set data.n=2000")
        node = over
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, _Dotted())
        try:
            node[parts[-1]] = json.loads(val)
        except json.JSONDecodeError:
            node[parts[-1]] = val
    return over


def check(cfg: Any, where: str = "") -> None:
    """Each `option` field's choices and bounds (nested configs too); ValueError naming the key."""
    for f in dataclasses.fields(cfg):
        value, opt = getattr(cfg, f.name), f.metadata.get("option")
        if dataclasses.is_dataclass(value):
            check(value, f"{where}{f.name}.")
        if opt is None or value is None:
            continue
        if opt.choices and value not in opt.choices:
            raise ValueError(f"{where}{f.name}: expected one of {', '.join(opt.choices)}, got {value!r}")
        if opt.bounds and not opt.bounds[0] <= value <= opt.bounds[1]:
            raise ValueError(f"{where}{f.name}: {value!r} is outside [{opt.bounds[0]}, {opt.bounds[1]}]")


def describe(cfg: Any, where: str = "") -> list[str]:
    """One line per setting, dotted key = current value, and its help: for --help."""
    lines = []
    for f in dataclasses.fields(cfg):
        value, opt = getattr(cfg, f.name), f.metadata.get("option")
        if dataclasses.is_dataclass(value):
            lines += describe(value, f"{where}{f.name}.")
            continue
        text = f"  {where}{f.name}={json.dumps(value)}"
        if opt is not None:
            extra = f" ({'|'.join(opt.choices)})" if opt.choices else ""
            extra += f" [{opt.bounds[0]:g}..{opt.bounds[1]:g}]" if opt.bounds else ""
            text = f"{text:<36} {opt.help}{extra}"
        lines.append(text)
    return lines
