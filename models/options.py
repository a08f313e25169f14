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


def option(
    default: Any,
    help: str,
    flag: str | None = None,
    choices: tuple[str, ...] = (),
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    show_default: bool = True,
) -> Any:
    """A dataclass field whose default is `default` and whose flag is `flag` (None: no flag).
    `parse` may raise ValueError or RuntimeError: argparse then names the flag and the message."""
    meta = {"option": Option(help, flag, choices, parse, metavar, show_default)}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def options(cls: type) -> dict[str, tuple[Option, Any]]:
    """{field name: (its Option, its default)} for the fields of `cls` made with `option`."""
    out = {}
    for f in dataclasses.fields(cls):
        opt = f.metadata.get("option")
        if opt is not None:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
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
