import argparse
from dataclasses import dataclass

import pytest

from models.options import add_flags, from_args, given, option


@dataclass
class Demo:
    n: int = option(600, "frames", "--n", metavar="N")
    gate: bool = option(True, "write it anyway", "--no-gate")
    fast: bool = option(False, "the fast path", "--fast")
    kind: str = option("a", "which one", "--kind", choices=("a", "b"))
    items: list[str] = option(["x", "y"], "comma list", "--items", parse=lambda t: t.split(","), metavar="ITEMS")
    hidden: float = 1.5  # no flag


def parse(argv, only_given=False):
    p = argparse.ArgumentParser()
    add_flags(p, Demo, only_given=only_given)
    return p, p.parse_args(argv)


def test_flags_come_from_the_fields_and_fill_the_config():
    p, args = parse(["--n", "7", "--no-gate", "--fast", "--kind", "b", "--items", "p,q"])
    assert from_args(Demo, args) == Demo(n=7, gate=False, fast=True, kind="b", items=["p", "q"])
    assert from_args(Demo, parse([])[1]) == Demo()
    text = " ".join(p.format_help().split())
    assert "--n N frames (default: 600)" in text and "--no-gate write it anyway" in text
    assert "--items ITEMS comma list (default: x,y)" in text and "hidden" not in text


def test_a_bad_value_is_argparses_one_line_error(capsys):
    with pytest.raises(SystemExit) as e:
        parse(["--kind", "c"])
    assert e.value.code == 2 and "invalid choice: 'c'" in capsys.readouterr().err


def test_only_given_flags_override():
    _, args = parse(["--n", "3"], only_given=True)
    assert given(args, Demo) == {"n": 3}
