"""A second, independent renderer of PART.md's part: Blender's Cycles path tracer.

`python -m training.blender` writes the same labelled folder as `training.synth` (images/,
labels.csv, meta.jsonl, dataset.json) from a physically based scene: plastic housing with
recessed holes, metallic pins, textured board, area and point lights, depth of field, then
PART.md's camera noise, colour cast and JPEG. It shares no drawing, geometry or sampling code
with `training.synth`, so a model trained on one and tested on the other measures what the
renderer taught it. See training/blender/README.md.

bpy needs its own venv (.venv-blender, `make blender-venv`); only `training.blender.scene`
imports it, so the sampling and the folder bookkeeping import anywhere.
"""
