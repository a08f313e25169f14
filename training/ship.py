"""python -m training.ship: make a trained run the shipped default model, with its model card.

  python -m training.ship --run runs/default

Copies the run's checkpoint to models/default/model.safetensors, renders fresh test sets (new
seeds, never seen in training), evaluates the checkpoint on them with training.evaluate, and
writes models/default/MODEL_CARD.md: data, recipe, metrics and the commands that reproduce them.
Every figure in the card comes from this command.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from models.bundle import BUNDLE_FILE, export_flags, sha256_file
from models.checkpoint import CheckpointError, read_spec
from models.cli import command_parser
from models.part import OUTWARD_WITHIN_DEG, load_part
from training import datasets
from training.evaluate import PLACES, evaluate
from training.train import TrainConfig


def _fmt(m: dict[str, Any]) -> str:
    mp = m.get("missing_pins") or {"n": 0, "escapes": 0}
    return (
        f"| {m['n']} | {m['accuracy']:.4f} | {m['ng_ok_accuracy']:.4f} | {m['escape_rate']:.4f} "
        f"| {m['overkill_rate']:.4f} | {m.get('pin_accuracy', float('nan')):.4f} | {mp['escapes']} of {mp['n']} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = command_parser("python -m training.ship", __doc__)
    ap.add_argument("--run", type=Path, default=Path("runs/default"), help="the run folder to ship")
    ap.add_argument("--dest", type=Path, default=Path("models/default"), help="where the model and its card go")
    ap.add_argument(
        "--data", type=Path, help="where the test sets are rendered (default: $PININSPECT_DATA, else data/)"
    )
    ap.add_argument("--workers", type=int, default=2, help="rendering processes for the test sets")
    ap.add_argument(
        "--blender-n",
        type=int,
        default=datasets.get("blender-test").n,
        help="frames of the fresh Blender test set, never trained on (default %(default)s; 0 skips it; needs "
        "make blender-venv; rendered once into --data, 1.6-4 s a frame on 2 cores)",
    )
    args = ap.parse_args(argv)
    ckpt = args.run / "model.safetensors"
    try:
        spec = read_spec(ckpt)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    part = load_part(spec["train_config"]["part"])
    # a fine-tuned run's first stage is often the model about to be replaced: read it before copying
    init = spec["train_config"].get("init_from")
    first = read_spec(Path(init)) if init and Path(init).exists() else None
    args.dest.mkdir(parents=True, exist_ok=True)
    shipped = args.dest / "model.safetensors"
    shutil.copyfile(ckpt, shipped)
    results = {}
    for name in datasets.CARD_SETS:
        s = datasets.get(name)
        folder = datasets.materialize(s, part, args.data, workers=args.workers)
        r = evaluate(shipped, folder, folder / "preds.csv", progress=False)
        results[name] = {"what": s.what, "settings": s.settings(), **r["metrics"]}
        print(
            f"{name}: acc {r['metrics']['accuracy']:.4f}  NG/OK {r['metrics']['ng_ok_accuracy']:.4f}  "
            f"escape {r['metrics']['escape_rate']:.4f}  overkill {r['metrics']['overkill_rate']:.4f}  "
            f"pin {r['metrics'].get('pin_accuracy', float('nan')):.4f}"
        )
    if args.blender_n:
        try:
            folder = datasets.materialize(datasets.get("blender-test"), part, args.data, n=args.blender_n)
        except datasets.DatasetError as e:
            print(f"note: no Blender row in the card: {e}", file=sys.stderr)
        else:
            r = evaluate(shipped, folder, folder / "preds.csv", progress=False)
            seen = blender_frames(spec)
            what = "the Blender renderer (path traced, training/blender), PART.md's ranges: " + (
                f"fresh seed; training saw {seen[0]} other Blender frames" if seen else "never seen in training"
            )
            settings = datasets.get("blender-test").settings(args.blender_n)
            results["blender-test"] = {"what": what, "settings": settings, **r["metrics"]}
            print(f"blender-test: {_fmt(r['metrics'])}")
    (args.dest / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    write_card(args.dest / "MODEL_CARD.md", spec, results, args.run, first)
    print(f"shipped {shipped} ({shipped.stat().st_size / 1e6:.1f} MB); card: {args.dest / 'MODEL_CARD.md'}")
    stale = stale_bundle(args.dest, shipped)
    if stale:
        print(f"note: {stale}", file=sys.stderr)
    return 0


def blender_frames(spec: dict[str, Any]) -> tuple[int, str] | None:
    """(frames, folders) of Blender-rendered frames the run trained on, or None when it saw none.
    Several mixed sets (`data.mix_set=a,b`) are recorded comma-separated: their frames add up and
    their folders come back comma-separated."""
    info = spec.get("data", {})
    for key in ("train", "mix"):
        found = []
        for folder in (info.get(key) or "").split(","):
            try:
                ds = json.loads((Path(folder) / "dataset.json").read_text()) if folder else {}
            except (OSError, json.JSONDecodeError):
                continue
            if ds.get("generator") == "blender":
                found.append((int(ds.get("n", 0)), str(folder)))
        if found:
            return sum(n for n, _ in found), ",".join(f for _, f in found)
    return None


def stale_bundle(dest: Path, checkpoint: Path) -> str | None:
    """A line saying the station's ONNX/OpenVINO models in `dest` were exported from another
    checkpoint than `checkpoint` (the station keeps running them until the next export), else None."""
    try:
        info = json.loads((dest / BUNDLE_FILE).read_text())
        source = info.get("source", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return None  # no bundle yet: nothing stale to warn about
    if source.get("sha256") == sha256_file(checkpoint):  # as export.build records its source
        return None
    flags = " ".join(["--name", dest.name, *export_flags(info)])
    return (
        f"{dest / BUNDLE_FILE}: its ONNX/OpenVINO models were exported from an earlier checkpoint; the station "
        f"keeps running them until you export this one with the same choices: python -m export.quantize {flags}"
    )


def _stages(spec: dict[str, Any], summary: dict[str, Any], first: dict[str, Any] | None) -> list[str]:
    """One line per training stage: a run started from another checkpoint's weights (`first`, its
    spec) has two."""
    stages = []
    tc = spec["train_config"]
    if first is not None:
        ftc = first["train_config"]
        stages.append(
            f"* Stage 1 (`{ftc['name']}`): {first['epochs_run']} epochs on {ftc['data']['n']} renders (seed "
            f"{ftc['data']['seed']}), lr {ftc['lr']}, {first.get('train_seconds', 0) / 60:.1f} min."
        )
    n = len(stages) + 1
    what = f"Stage {n}" if n > 1 else "Training"
    origin = f", from {tc['init_from']}" if tc.get("init_from") else ""
    seen = blender_frames(spec)
    blender = (
        f" + {seen[0]} Blender frames ({', '.join(f'`{Path(f).name}`' for f in seen[1].split(','))})" if seen else ""
    )
    stages.append(
        f"* {what} (`{tc['name']}`{origin}): "
        f"{spec['epochs_run']} epochs on {tc['data']['n']} renders (seed {tc['data']['seed']}){blender}, "
        f"lr {tc['lr']}, "
        f"{summary.get('elapsed_s', spec.get('train_seconds', 0)) / 60:.1f} min (rendering "
        f"{summary.get('data_s', 0):.0f} s of it), peak memory {summary.get('peak_rss_mb', 'n/a')} MB."
    )
    return stages


def _changed(tc: dict[str, Any], base: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """`--set` arguments for every setting of a run's config that differs from TrainConfig's
    defaults (nested data settings as data.KEY), shell-quoted where needed."""
    base = dataclasses.asdict(TrainConfig()) if base is None else base
    out: list[str] = []
    for key, value in tc.items():
        default = base.get(key, object())
        if key == "out":
            continue
        if key == "data" and isinstance(value, dict) and isinstance(default, dict):
            out += _changed(value, default, f"{prefix}{key}.")
        elif value != default:
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            out.append(shlex.quote(f"{prefix}{key}={text}"))
    return out


def _reproduce(spec: dict[str, Any], blender_n: int | None = None) -> list[str]:
    """The commands that remake this model and this card, from its own config (`blender_n`: the
    Blender test set's size the card was made with)."""
    tc = spec["train_config"]
    ship = f"python -m training.ship --run runs/{tc['name']}"
    if blender_n is not None and blender_n != datasets.get("blender-test").n:
        ship += f" --blender-n {blender_n}"
    ship += "   # -> models/default/ + this card"
    seen = blender_frames(spec)
    render_blender = (
        f"# the Blender frames: .venv-blender/bin/python -m training.blender --out {seen[1]} "
        f"--n {seen[0]} --seed {datasets.get('blender-train').seed}   (~3-4 s a frame on 2 cores)"
        if seen
        else ""
    )
    if not tc.get("init_from"):
        lines = []
        if seen and not tc["data"].get("mix_set"):
            lines.append(render_blender)
        elif seen:
            lines.append(f"# renders the {seen[0]} Blender frames on first use (make blender-venv; ~3-4 s a frame)")
        return lines + [
            "python -m training.train" + "".join(f" --set {x}" for x in _changed(tc)) + f"   # -> runs/{tc['name']}/",
            ship,
        ]
    sets = [f"name={tc['name']}", f"data.n={tc['data']['n']}", f"epochs={tc['epochs']}", f"lr={tc['lr']}"]
    lines = [
        f"# stage 1 made {tc['init_from']}: python -m training.train && python -m training.ship; stage 2 starts from it"
    ]
    if seen and tc["data"].get("mix_set"):  # named sets (one or several): rendered on first use, as above
        sets.append(f"data.mix_set={tc['data']['mix_set']}")
        if tc["data"].get("mix_n"):
            sets.append(f"data.mix_n={tc['data']['mix_n']}")
        lines.append(f"# renders the {seen[0]} Blender frames on first use (make blender-venv; ~3-4 s a frame)")
    elif seen:
        sets.append(f"data.mix_folder={seen[1]}")
        lines.append(render_blender)
    lines += [
        f"python -m training.train --preset continue --set init_from={tc['init_from']} "
        + " ".join(f"--set {x}" for x in sets),
        ship,
    ]
    return lines


def write_card(
    path: Path, spec: dict[str, Any], results: dict[str, Any], run: Path, first: dict[str, Any] | None = None
) -> None:
    tc = spec["train_config"]
    base = first["train_config"] if first is not None else tc  # the stage trained from random weights
    n_pins = spec["part"]["rows"] * spec["part"]["cols"]
    shape = f"{spec['part']['rows']} x {spec['part']['cols']} pins"
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    lines = [
        "# Model card: the default pin-defect model",
        "",
        f"* Part: `{spec['part']['name']}` (fingerprint `{spec['part_fingerprint']}`): "
        f"{spec['part'].get('description') or shape}.",
        f"* Architecture: `{spec['model_name']}` (timm-registered PinViT): {json.dumps(spec['model_config'])}.",
        f"* Input: crop {spec['input']['crop']} of the {spec['input']['frame_width']}x{spec['input']['frame_height']} "
        "frame, resized to "
        f"{spec['input']['width']}x{spec['input']['height']}, mean/std {spec['input']['mean']}/{spec['input']['std']}.",
        f"* Outputs: scores (BENDNG, NUKENG, OK), the defective pin (1-{n_pins}) and a "
        f"{spec['input']['height'] // spec['input']['patch']}x{spec['input']['width'] // spec['input']['patch']} "
        "defect heatmap. Thresholds: " + json.dumps(spec["thresholds"]) + ".",
        f"* Trained from random weights (no pretrained weights exist here) on {base['data']['n']} renders "
        f"(seed {base['data']['seed']}, styles {base['data']['styles']}, widen {base['data']['widen']}, up to "
        f"{base['data']['max_defects']} defective pins per defective render), batch {base['batch_size']}, AdamW "
        f"with warmup and cosine decay, mixed precision {base.get('amp', 'off')}; supervision: {base['supervision']} "
        "(per-token defect map + pin map from the "
        "generator's ground truth).",
        *_stages(spec, summary, first),
        f"* Data hash `{spec['data']['train_hash']}`, config hash `{spec['config_hash']}`, "
        f"code version {spec['code_version']}.",
        "",
        "## Reproduce",
        "",
        "```bash",
        *_reproduce(spec, results.get("blender-test", {}).get("settings", {}).get("n", 0)),
        f"python -m export.quantize --name {path.parent.name}   # -> the INT8 / FP32 bundle beside this card",
        "```",
        "",
        "## Metrics (from `python -m training.ship`, test sets rendered with fresh seeds)",
        "",
        "| test set | images | 3-class accuracy | NG vs OK | escape | overkill | pin named | missing pins called OK |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name}: {r['what']} " + _fmt(r))
    lines += [
        "",
        "Escape = a defective part called OK; overkill = a good part called NG; pin named = the "
        "defective pin predicted right, of defective images; missing pins = NUKENG pins at <= 10% of their "
        "height (only the hole shows).",
        "",
    ]
    bd = results.get("test-allstyles", {}).get("bend_direction")
    if bd:
        lines += [
            "### BENDNG by bend direction (test-allstyles)",
            "",
            "PART.md: from one oblique view, a pin bent towards the camera looks like a pushed-back one.",
            "",
            "| bend direction | images | called BENDNG | called NUKENG | called OK |",
            "|---|---|---|---|---|",
        ]
        for d, c in sorted(bd.items()):
            n = sum(c.values())
            lines.append(f"| {d} | {n} | {c['BENDNG'] / n:.1%} | {c['NUKENG'] / n:.1%} | {c['OK'] / n:.1%} |")
        lines.append("")
    lines += _housing_section(results)
    lines += _place_section(results)
    path.write_text("\n".join(lines) + "\n")


def _housing_section(results: dict[str, Any]) -> list[str]:
    """NG vs OK errors per housing tone of each test set (PART.md: most housings dark, some white,
    ivory or beige): where a model's errors gather, which one accuracy figure hides."""
    rows = [(name, r["by_housing"]) for name, r in results.items() if r.get("by_housing")]
    if not rows:
        return []
    lines = [
        "### NG vs OK by housing tone",
        "",
        "| test set | dark: escapes | dark: overkills | light: escapes | light: overkills |",
        "|---|---|---|---|---|",
    ]
    for name, h in rows:
        cells = []
        for tone in ("dark", "light"):
            t = h.get(tone, {"escapes": 0, "defective": 0, "overkills": 0, "good": 0})
            cells += [f"{t['escapes']} of {t['defective']}", f"{t['overkills']} of {t['good']}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _place_section(results: dict[str, Any]) -> list[str]:
    """Escapes per place of the defect on the part (inner pins, border pins, border pins bent out
    towards the housing's edge) of each test set with frame parameters: where a model lets defects
    through, which one escape rate hides."""
    rows = [(name, r["by_place"]) for name, r in results.items() if r.get("by_place")]
    if not rows:
        return []
    lines = [
        "### Escapes by where the defect is",
        "",
        f"Border pins: the back row and the outer columns; bent outward: leaning within {OUTWARD_WITHIN_DEG:.0f} "
        "degrees of straight out towards the housing's edge (a back-row pin's end then rises past the back "
        "edge, onto the background).",
        "",
        "| test set | " + " | ".join(PLACES.values()) + " |",
        "|---|" + "---|" * len(PLACES),
    ]
    for name, places in rows:
        cells = [places.get(k, {"escapes": 0, "defective": 0}) for k in PLACES]
        lines.append(f"| {name} | " + " | ".join(f"{t['escapes']} of {t['defective']}" for t in cells) + " |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
