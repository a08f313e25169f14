import argparse
from dataclasses import dataclass, field

import pytest

from models.options import add_flags, check, describe, from_args, given, merge, option, parse_sets


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


@dataclass
class Inner:
    share: float = option(0.0, "a share", bounds=(0, 1))
    folder: str | None = option(None, "a folder")


@dataclass
class Outer:
    epochs: int = option(10, "passes")
    name: str = option("default", "run name")
    amp: str = option("auto", "precision", choices=("auto", "off"))
    inner: Inner = field(default_factory=Inner)


def test_sets_reach_nested_fields_with_their_types():
    cfg = merge(Outer(), parse_sets(["epochs=4", "inner.share=1", "inner.folder=data/x", "name=2024"]))
    assert cfg.epochs == 4 and cfg.name == "2024" and cfg.inner.folder == "data/x"
    assert cfg.inner.share == 1.0 and isinstance(cfg.inner.share, float)


def test_an_optional_setting_a_preset_filled_goes_back_to_null_and_a_required_one_refuses_it():
    """`--preset both-renderers --set data.mix_n=null` (every frame of each set) used to be refused."""
    preset = merge(Outer(), {"inner": {"folder": "data/x"}})
    assert merge(preset, parse_sets(["inner.folder=null"])).inner.folder is None
    with pytest.raises(ValueError, match="epochs: expected int"):
        merge(Outer(), parse_sets(["epochs=null"]))


@dataclass
class WithDict:
    overrides: dict = option({"stem_depth": 2}, "fields over the model's")


def test_a_dotted_set_adds_to_a_dict_setting_and_a_whole_dict_replaces_it():
    """`--set model_overrides.depth=6` keeps the recipe's stem_depth (it used to drop it)."""
    assert merge(WithDict(), parse_sets(["overrides.depth=6"])).overrides == {"stem_depth": 2, "depth": 6}
    assert merge(WithDict(), parse_sets(['overrides={"depth": 6}'])).overrides == {"depth": 6}
    assert merge(WithDict(), {"overrides": {"depth": 6}}).overrides == {"depth": 6}  # a JSON file's dict


@pytest.mark.parametrize(
    "sets, named",
    [
        (["epochs=four"], "epochs: expected int"),
        (["epochs=4.5"], "epochs: expected int"),
        (["inner.share=[1]"], "inner.share: expected float"),
        (["inner=3"], "inner: expected a dict of settings"),
        (["inner.shar=1"], "inner.shar: unknown setting"),
        (["epochs"], "expected KEY=VALUE"),
    ],
)
def test_a_bad_set_is_one_error_naming_the_key(sets, named):
    with pytest.raises(ValueError, match=named):
        merge(Outer(), parse_sets(sets))


@pytest.mark.parametrize(
    "sets, named",
    [(["inner.share=1.5"], r"inner.share: 1.5 is outside \[0, 1\]"), (["amp=fp16"], "amp: expected one of")],
)
def test_check_applies_choices_and_bounds(sets, named):
    check(merge(Outer(), parse_sets(["inner.share=1"])))  # in range
    with pytest.raises(ValueError, match=named):
        check(merge(Outer(), parse_sets(sets)))


def test_describe_lists_every_key_with_its_default_and_help():
    lines = describe(Outer())
    assert any(line.split()[0] == "inner.share=0.0" and "a share [0..1]" in line for line in lines)
    assert any(line.split()[0] == 'amp="auto"' and "(auto|off)" in line for line in lines)
    assert len(lines) == 5
