"""Build the part in Blender, path trace it with Cycles on the CPU, and finish the frame like
PART.md's camera: `render_frame(spec, params) -> (BGR uint8 frame, ground truth)`.

The scene is built from nothing for every frame (factory settings, empty), so a frame depends on
its params alone. Cycles' seed comes from the params too: a defective frame and its OK twin share
their sampling noise, and differ only where the defect changes what light reaches the camera.

Ground truth is projected with Blender's own camera (`world_to_camera_view`), so it is the very
projection the renderer used, lens shift and roll included.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector

from models.part import PartSpec
from training.blender.sampling import pin_axes

_SEGMENTS = 24  # facets around a pin or a hole; smooth shading hides them
_HOLE_DEPTH = 0.45  # recess below the housing top, in pitches; its floor is black
_PIN_EMBED = 0.6  # pin length below the housing top, so a bent pin still reaches into its hole
_GRID = 12  # background plane half-size, in pitches beyond the housing


# ---------------------------------------------------------------------------------------------
# Scene setup


def _reset(spec: PartSpec, p: dict[str, Any], threads: int) -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    cy = scene.cycles
    cy.device = "CPU"
    cy.samples = int(p["samples"])
    cy.use_adaptive_sampling = False  # a fixed number of samples keeps the twin's noise identical
    cy.seed = int(p["render_seed"])
    cy.use_animated_seed = False
    cy.use_denoising = True
    cy.denoiser = "OPENIMAGEDENOISE"
    cy.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    # Denoising dominates the time at a few samples: the balanced network, albedo/normal guides
    # taken as they are (the full prefilter costs as much again).
    cy.denoising_prefilter = "FAST"
    cy.denoising_quality = "BALANCED"
    cy.use_light_tree = False  # three lights at most: sampling them all is cheaper than the tree
    # Shiny metal needs two glossy bounces (pins see each other); diffuse surfaces take their
    # light directly (the world light stands in for the room); nothing here is transparent.
    cy.max_bounces = 2
    cy.diffuse_bounces = 0
    cy.glossy_bounces = 2
    cy.transmission_bounces = 0
    cy.transparent_max_bounces = 0
    cy.volume_bounces = 0
    cy.caustics_reflective = False
    cy.caustics_refractive = False
    # No fireflies from the metal at a few samples: clamp, and blur glossy paths after a bounce.
    cy.sample_clamp_direct = 8.0
    cy.sample_clamp_indirect = 2.0
    cy.blur_glossy = 1.0
    cy.pixel_filter_type = "BLACKMAN_HARRIS"
    cy.filter_width = 1.5
    r = scene.render
    r.resolution_x, r.resolution_y = spec.camera.frame_width, spec.camera.frame_height
    r.resolution_percentage = 100
    r.threads_mode = "FIXED" if threads > 0 else "AUTO"
    if threads > 0:
        r.threads = threads
    r.film_transparent = False
    r.use_compositing = False
    r.use_sequencer = False
    scene.view_settings.view_transform = "AgX"  # film-like highlights: metal glints roll off, not clip
    scene.view_settings.look = "None"
    scene.view_settings.exposure = float(p["exposure"])
    scene.view_settings.gamma = 1.0
    scene.display_settings.display_device = "sRGB"
    scene.sequencer_colorspace_settings.name = "sRGB"
    img = r.image_settings
    img.file_format, img.color_mode, img.color_depth, img.compression = "PNG", "RGB", "16", 0
    return scene


def _link(obj: bpy.types.Object) -> bpy.types.Object:
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _principled(name: str, colour: list[float], roughness: float, metallic: float = 0.0) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.distribution = "GGX"
    return mat


def _mesh_object(name: str, verts: list, faces: list, mat: bpy.types.Material, smooth: list[bool] | None = None):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(map(float, v)) for v in verts], [], faces)
    if smooth is not None:
        mesh.polygons.foreach_set("use_smooth", smooth)
    mesh.materials.append(mat)
    mesh.update()
    return _link(bpy.data.objects.new(name, mesh))


# ---------------------------------------------------------------------------------------------
# The part


def _housing(spec: PartSpec, p: dict[str, Any]) -> None:
    """A plastic block whose top is z = 0, with a round, black-floored recess at every pin."""
    h = p["housing"]
    mat = _principled("housing", h["colour"], h["roughness"])
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Specular IOR Level"].default_value = 0.45
    half_x = (spec.cols - 1) / 2 + spec.housing_margin
    half_y = (spec.rows - 1) / 2 + spec.housing_margin
    depth = p["housing_depth"]
    corners = [(sx * half_x, sy * half_y, z) for z in (-depth, 0.0) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    sides = [(0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    housing = _mesh_object("housing", corners, [(3, 2, 1, 0), (4, 5, 6, 7), *sides], mat)
    bevel = housing.modifiers.new("bevel", "BEVEL")  # rounded edges catch a highlight like moulded plastic
    bevel.width, bevel.segments = h["bevel"], 2

    # One cutter object holding every hole: a single boolean is far cheaper than 27.
    radius = spec.pin_diameter * spec.hole_ratio / 2
    base, _, _ = pin_axes(spec, p)
    verts: list[tuple[float, float, float]] = []
    faces: list[tuple[int, ...]] = []
    n = _SEGMENTS
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    for x, y, _ in base:
        k = len(verts)
        for z in (-_HOLE_DEPTH, 0.5):
            verts += [(x + radius * math.cos(a), y + radius * math.sin(a), z) for a in ang]
        faces.append(tuple(k + i for i in reversed(range(n))))  # bottom
        faces.append(tuple(k + n + i for i in range(n)))  # top
        faces += [(k + i, k + (i + 1) % n, k + n + (i + 1) % n, k + n + i) for i in range(n)]
    cutter = _mesh_object("holes", verts, faces, mat)
    cutter.hide_render = True
    boolean = housing.modifiers.new("holes", "BOOLEAN")
    boolean.operation, boolean.solver, boolean.object = "DIFFERENCE", "EXACT", cutter
    boolean.use_self = False
    # The floor of each recess: black, so a hole reads dark whatever the plastic.
    floor = _principled("hole", [0.004, 0.004, 0.004], 0.9)
    verts, faces = [], []
    for x, y, _ in base:
        k = len(verts)
        verts += [(x + radius * 1.02 * math.cos(a), y + radius * 1.02 * math.sin(a), -_HOLE_DEPTH + 0.01) for a in ang]
        faces.append(tuple(k + i for i in range(n)))
    _mesh_object("hole_floors", verts, faces, floor)
    # PART.md's pin-1 mark: a small triangle on the top, left of pin 1, pointing at it.
    x1, y1, _ = base[0]
    s = 0.32
    cx = x1 - 0.5 * (radius + (spec.housing_margin - h["bevel"]))
    tri = [(cx - s * 0.45, y1 + s / 2, 0.004), (cx - s * 0.45, y1 - s / 2, 0.004), (cx + s * 0.5, y1, 0.004)]
    mark = [0.7, 0.7, 0.68] if h["kind"] == "dark" else [0.03, 0.03, 0.03]
    _mesh_object("pin1_mark", tri, [(0, 1, 2)], _principled("pin1_mark", mark, 0.6))


def _lathe(profile: list[list[tuple[float, float]]], name: str, mat: bpy.types.Material) -> bpy.types.Object:
    """A solid of revolution about the z axis. `profile` is a list of (radius, z) polylines; a
    polyline is smooth shaded, the edge between two polylines stays sharp (a chamfer's edge),
    and a polyline of one point is a flat cap."""
    n = _SEGMENTS
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    verts: list[tuple[float, float, float]] = []
    faces: list[tuple[int, ...]] = []
    smooth: list[bool] = []
    for line in profile:
        start = len(verts)
        for rad, z in line:
            verts += [(rad * math.cos(a), rad * math.sin(a), z) for a in ang]
        if len(line) == 1:  # cap facing up
            faces.append(tuple(start + i for i in range(n)))
            smooth.append(False)
            continue
        for j in range(len(line) - 1):
            a0, a1 = start + j * n, start + (j + 1) * n
            faces += [(a0 + i, a0 + (i + 1) % n, a1 + (i + 1) % n, a1 + i) for i in range(n)]
            smooth += [True] * n
    return _mesh_object(name, verts, faces, mat, smooth)


def _pin_profile(spec: PartSpec, p: dict[str, Any], length: float) -> list[list[tuple[float, float]]]:
    """Profile of the part of a pin above its base (z = 0 .. length), ending in a rounded or
    chamfered tip; the side continues down to -_PIN_EMBED."""
    rad = spec.pin_diameter / 2
    tip = min(p["pins"]["tip_size"] * rad, 0.9 * rad)
    top = length
    if p["pins"]["tip"] == "round":
        arc = [(rad - tip + tip * math.cos(a), top - tip + tip * math.sin(a)) for a in np.linspace(0, math.pi / 2, 7)]
        return [[(rad, -_PIN_EMBED), (rad, top - tip)] + arc[1:], [(rad - tip, top)]]
    return [[(rad, -_PIN_EMBED), (rad, top - tip)], [(rad, top - tip), (rad - tip, top)], [(rad - tip, top)]]


def _pins(spec: PartSpec, p: dict[str, Any]) -> None:
    pins = p["pins"]
    mat = _principled("pin", pins["colour"], pins["roughness"], metallic=1.0)
    base, axis, height = pin_axes(spec, p)
    up = Vector((0, 0, 1))
    for k in range(spec.n_pins):
        if height[k] <= 1e-6:  # pushed right through: only the empty hole shows
            continue
        # A pushed-back pin sits lower in its hole; its stub is hidden below the housing.
        obj = _lathe(_pin_profile(spec, p, float(height[k])), f"pin{k + 1}", mat)
        rot = up.rotation_difference(Vector(axis[k])).to_matrix().to_4x4()
        obj.matrix_world = Matrix.Translation(Vector(base[k])) @ rot
        if axis[k][2] < 0.999:  # a bent pin: keep its stub upright in the hole, bend at the top
            stub = _lathe([[(spec.pin_diameter / 2, -_PIN_EMBED), (spec.pin_diameter / 2, 0.0)]], f"stub{k + 1}", mat)
            stub.location = Vector(base[k])


# ---------------------------------------------------------------------------------------------
# Surroundings


def _node(tree: bpy.types.NodeTree, kind: str, **inputs: Any) -> bpy.types.Node:
    node = tree.nodes.new(kind)
    for key, value in inputs.items():
        node.inputs[key].default_value = value
    return node


def _math(tree: bpy.types.NodeTree, op: str, a: Any, b: Any) -> Any:
    """A math node on two inputs, each a socket or a number; returns its output socket."""
    node = tree.nodes.new("ShaderNodeMath")
    node.operation = op
    for socket, value in zip(node.inputs[:2], (a, b), strict=True):
        if isinstance(value, (int, float)):
            socket.default_value = value
        else:
            tree.links.new(value, socket)
    return node.outputs["Value"]


def _background(spec: PartSpec, p: dict[str, Any]) -> None:
    """The board the connector sits on: a green PCB (mask, traces, pads) or a grey fixture
    plate (brushed, mottled), from procedural textures so every frame's texture differs."""
    b = p["background"]
    mat = bpy.data.materials.new("background")
    mat.use_nodes = True
    tree = mat.node_tree
    bsdf = tree.nodes["Principled BSDF"]
    link = tree.links.new
    coords = _node(tree, "ShaderNodeTexCoord")
    mapping = _node(tree, "ShaderNodeMapping")
    mapping.inputs["Location"].default_value = b["offset"]
    mapping.inputs["Rotation"].default_value = (0, 0, math.radians(b["angle_deg"]))
    mapping.inputs["Scale"].default_value = (b["scale"],) * 3
    link(coords.outputs["Object"], mapping.inputs["Vector"])
    vec = mapping.outputs["Vector"]
    base = (*b["colour"], 1.0)
    noise = _node(tree, "ShaderNodeTexNoise", Scale=0.6, Detail=2.0, Roughness=0.6)
    noise.noise_dimensions = "2D"
    link(vec, noise.inputs["Vector"])
    mottle = _node(tree, "ShaderNodeMix")
    mottle.data_type = "RGBA"
    mottle.blend_type = "MULTIPLY"
    mottle.inputs["Factor"].default_value = 1.0
    mottle.inputs[6].default_value = base
    ramp = _node(tree, "ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (0.7, 0.7, 0.7, 1)
    ramp.color_ramp.elements[1].color = (1.3, 1.3, 1.3, 1)
    link(noise.outputs["Fac"], ramp.inputs["Fac"])
    link(ramp.outputs["Color"], mottle.inputs[7])
    colour_out = mottle.outputs[2]
    bsdf.inputs["Roughness"].default_value = b["roughness"]
    surface = _pcb_surface if b["kind"] == "pcb" else _plate_surface
    surface(tree, bsdf, vec, colour_out, b)
    half = (spec.cols - 1) / 2 + spec.housing_margin + _GRID
    z = -p["housing_depth"]
    verts = [(-half, -half, z), (half, -half, z), (half, half, z), (-half, half, z)]
    _mesh_object("background", verts, [(0, 1, 2, 3)], mat)


def _pcb_surface(tree: bpy.types.NodeTree, bsdf: bpy.types.Node, vec: Any, colour_out: Any, b: dict[str, Any]) -> None:
    """Copper traces under the solder mask show as lighter lines, routed along x in some places
    and along y in others; pads and vias as tin dots."""
    link = tree.links.new
    along: list[Any] = []
    for direction in ("X", "Y"):
        waves = _node(tree, "ShaderNodeTexWave", Scale=b["trace_scale"], Distortion=0.0, Detail=0.0)
        waves.wave_type, waves.bands_direction = "BANDS", direction
        link(vec, waves.inputs["Vector"])
        along.append(_math(tree, "GREATER_THAN", waves.outputs["Fac"], 0.82))
    routing = _node(tree, "ShaderNodeTexNoise", Scale=0.25, Detail=0.0)
    routing.noise_dimensions = "2D"
    link(vec, routing.inputs["Vector"])
    in_x = _math(tree, "GREATER_THAN", routing.outputs["Fac"], 0.5)
    in_y = _math(tree, "SUBTRACT", 1.0, in_x)
    traces = _node(tree, "ShaderNodeMath")
    traces.operation = "MAXIMUM"
    link(_math(tree, "MULTIPLY", along[0], in_x), traces.inputs[0])
    link(_math(tree, "MULTIPLY", along[1], in_y), traces.inputs[1])
    lighter = _node(tree, "ShaderNodeMix")
    lighter.data_type = "RGBA"
    link(traces.outputs["Value"], lighter.inputs["Factor"])
    link(colour_out, lighter.inputs[6])
    lighter.inputs[7].default_value = (b["colour"][0] * 1.8, b["colour"][1] * 1.9, b["colour"][2] * 1.5, 1)
    cells = _node(tree, "ShaderNodeTexVoronoi", Scale=0.3)
    cells.voronoi_dimensions = "2D"
    link(vec, cells.inputs["Vector"])
    pads = _node(tree, "ShaderNodeMath")
    pads.operation = "LESS_THAN"
    pads.inputs[1].default_value = b["pad_size"]
    link(cells.outputs["Distance"], pads.inputs[0])
    tin = _node(tree, "ShaderNodeMix")
    tin.data_type = "RGBA"
    link(pads.outputs["Value"], tin.inputs["Factor"])
    link(lighter.outputs[2], tin.inputs[6])
    tin.inputs[7].default_value = (0.5, 0.45, 0.3, 1)
    link(tin.outputs[2], bsdf.inputs["Base Color"])
    link(pads.outputs["Value"], bsdf.inputs["Metallic"])
    bump = _node(tree, "ShaderNodeBump", Strength=0.3, Distance=0.05)
    link(traces.outputs["Value"], bump.inputs["Height"])
    link(bump.outputs["Normal"], bsdf.inputs["Normal"])


def _plate_surface(
    tree: bpy.types.NodeTree, bsdf: bpy.types.Node, vec: Any, colour_out: Any, b: dict[str, Any]
) -> None:
    """Brushed metal: streaks stretched along one direction modulate the roughness."""
    link = tree.links.new
    streaks = _node(tree, "ShaderNodeTexNoise", Scale=4.0, Detail=2.0)
    streaks.noise_dimensions = "2D"
    stretch = _node(tree, "ShaderNodeMapping")
    stretch.inputs["Scale"].default_value = (0.05, 6.0, 1.0)
    link(vec, stretch.inputs["Vector"])
    link(stretch.outputs["Vector"], streaks.inputs["Vector"])
    rough = _node(tree, "ShaderNodeMapRange")
    rough.inputs["To Min"].default_value = max(0.05, b["roughness"] - 0.2)
    rough.inputs["To Max"].default_value = min(1.0, b["roughness"] + 0.2)
    link(streaks.outputs["Fac"], rough.inputs["Value"])
    link(rough.outputs["Result"], bsdf.inputs["Roughness"])
    link(colour_out, bsdf.inputs["Base Color"])
    bsdf.inputs["Metallic"].default_value = 0.7


def _direction(azimuth_deg: float, elevation_deg: float) -> Vector:
    """Unit vector from the part towards a point at this azimuth (0 = the camera's side, at -y)
    and elevation above the housing top."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return Vector((math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)))


def _lights(p: dict[str, Any]) -> None:
    for i, light in enumerate(p["lights"]):
        d = light["distance"]
        data = bpy.data.lights.new(f"light{i}", "AREA" if light["type"] == "area" else "POINT")
        data.color = light["colour"]
        # Power from the wanted irradiance at the part: E = P / (pi d^2) for an area light facing
        # it, P / (4 pi d^2) for a point light.
        if light["type"] == "area":
            data.size = light["size"]
            data.energy = light["irradiance"] * math.pi * d * d
        else:
            data.shadow_soft_size = 0.25
            data.energy = light["irradiance"] * 4 * math.pi * d * d
        obj = _link(bpy.data.objects.new(f"light{i}", data))
        obj.location = d * _direction(light["azimuth_deg"], light["elevation_deg"])
        obj.rotation_euler = (-obj.location).to_track_quat("-Z", "Y").to_euler()
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value = (*p["world"]["colour"], 1.0)
    bg.inputs["Strength"].default_value = p["world"]["strength"]
    bpy.context.scene.world = world


def _camera(spec: PartSpec, p: dict[str, Any]) -> bpy.types.Object:
    """A camera `distance` pitches from the housing top's centre, tilted from the vertical
    towards the front; focal length from the wanted pitch in pixels at that distance, the
    part's offset in the frame by lens shift, depth of field focused on the housing top."""
    cam = spec.camera
    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = 36.0
    focal_px = p["pitch_px"] * p["distance"]
    data.lens = focal_px * data.sensor_width / cam.frame_width
    data.clip_start, data.clip_end = 0.5, 10 * p["distance"]
    # Shift is in units of the frame's larger side; +shift_y moves the view up, the part down.
    dx, dy = p["shift_px"]
    size = max(cam.frame_width, cam.frame_height)
    data.shift_x, data.shift_y = -dx / size, dy / size
    obj = _link(bpy.data.objects.new("camera", data))
    view = _direction(p["azimuth_deg"], 90 - p["tilt_deg"])
    obj.location = p["distance"] * view
    look = (-view).to_track_quat("-Z", "Y").to_matrix().to_4x4()
    obj.matrix_world = Matrix.Translation(obj.location) @ look @ Matrix.Rotation(math.radians(p["roll_deg"]), 4, "Z")
    # Thin lens: a point dz nearer than the focus plane blurs to a disc of about
    # A * f_px * dz / (z * z_focus) pixels, A the aperture diameter. Sized for a straight pin's tip.
    z_focus = p["distance"]
    dz = spec.pin_height * math.cos(math.radians(p["tilt_deg"]))
    if p["defocus_px"] > 0.05:
        aperture = p["defocus_px"] * (z_focus - dz) * z_focus / (focal_px * dz)
        data.dof.use_dof = True
        data.dof.focus_distance = z_focus
        # Cycles: aperture radius = lens (mm, taken as 1e-3 scene units) / (2 * f-stop)
        data.dof.aperture_fstop = data.lens * 1e-3 / aperture
        data.dof.aperture_blades = 0
    bpy.context.scene.camera = obj
    return obj


# ---------------------------------------------------------------------------------------------
# Ground truth and the camera's own processing


def ground_truth(spec: PartSpec, p: dict[str, Any]) -> dict[str, Any]:
    """Base and tip of every pin in frame pixels (x right, y down, 0..width/height across the
    frame), projected through the scene's camera; call with the scene built for `p`."""
    scene = bpy.context.scene
    cam = scene.camera
    w, h = spec.camera.frame_width, spec.camera.frame_height
    base, axis, height = pin_axes(spec, p)

    def px(pt: np.ndarray) -> tuple[float, float]:
        v = world_to_camera_view(scene, cam, Vector(pt))
        return float(v.x) * w, (1.0 - float(v.y)) * h

    pins, bases = [], []
    for k in range(spec.n_pins):
        b, t = px(base[k]), px(base[k] + axis[k] * height[k])
        bases.append(b)
        pins.append([round(v, 2) for v in (*b, *t)])
    grid = np.array(bases).reshape(spec.rows, spec.cols, 2)
    steps = np.linalg.norm(np.diff(grid, axis=1), axis=-1) if spec.cols > 1 else np.ones(1)
    return {
        "pins": pins,
        "pitch_px": round(float(steps.mean()), 3),
        "defects": [] if p["label"] == "OK" else [[p["pin"], p["label"]]],
    }


def _load_rgb(path: Path) -> np.ndarray:
    """An image file read back through Blender as float RGB, top row first, 0..1 as stored."""
    img = bpy.data.images.load(str(path))
    try:
        img.colorspace_settings.name = "Non-Color"  # the stored values, no colour conversion
        w, h = img.size
        buf = np.empty(w * h * img.channels, np.float32)
        img.pixels.foreach_get(buf)
        return buf.reshape(h, w, img.channels)[::-1, :, :3].copy()
    finally:
        bpy.data.images.remove(img)


def _jpeg_roundtrip(rgb8: np.ndarray, quality: int, path: Path) -> np.ndarray:
    """Compress with Blender's own JPEG writer at `quality` and read the result back."""
    h, w, _ = rgb8.shape
    img = bpy.data.images.new("jpeg", w, h, alpha=False, float_buffer=False)
    try:
        img.colorspace_settings.name = "Non-Color"
        rgba = np.ones((h, w, 4), np.float32)
        rgba[..., :3] = rgb8[::-1] / 255.0
        img.pixels.foreach_set(rgba.ravel())
        img.file_format = "JPEG"
        img.filepath_raw = str(path)
        img.save(filepath=str(path), quality=int(quality))
    finally:
        bpy.data.images.remove(img)
    return np.round(_load_rgb(path) * 255).astype(np.uint8)


def camera_effects(rgb: np.ndarray, p: dict[str, Any], jpeg_path: Path) -> np.ndarray:
    """PART.md's camera after the lens: uneven light, colour cast, sensor noise, JPEG.
    `rgb` float 0..1 (display values) -> BGR uint8."""
    h, w, _ = rgb.shape
    amp, angle = p["gradient"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = math.radians(angle)
    ramp = ((xx - w / 2) * math.cos(a) + (yy - h / 2) * math.sin(a)) / (max(w, h) / 2)
    bgr = rgb[..., ::-1] * (1 + amp * ramp)[..., None]
    bgr = bgr * (1 + np.asarray(p["color_cast"], np.float32))
    noise = np.random.default_rng(p["noise_seed"]).normal(0, p["noise_sigma"], bgr.shape).astype(np.float32)
    bgr8 = np.clip(np.round(bgr * 255 + noise), 0, 255).astype(np.uint8)
    if p["jpeg_quality"] >= 100:
        return bgr8
    return _jpeg_roundtrip(bgr8[..., ::-1], p["jpeg_quality"], jpeg_path)[..., ::-1].copy()


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    """Cycles prints a line per render step on the C stdout; keep the terminal for the progress bar."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def build_scene(spec: PartSpec, p: dict[str, Any], threads: int = 0) -> bpy.types.Scene:
    """The scene for one frame, built from nothing."""
    scene = _reset(spec, p, threads)
    _housing(spec, p)
    _pins(spec, p)
    _background(spec, p)
    _lights(p)
    _camera(spec, p)
    return scene


def render_frame(spec: PartSpec, p: dict[str, Any], threads: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Path trace one frame: (H x W x 3 uint8 BGR, ground truth). The same params give the same
    frame; `threads` (0 = every core) only changes how fast."""
    scene = build_scene(spec, p, threads)
    truth = ground_truth(spec, p)
    with tempfile.TemporaryDirectory(prefix="pininspect-blender-") as tmp:
        raw = Path(tmp) / "raw.png"
        scene.render.filepath = str(raw)
        with _stdout_to_devnull():
            bpy.ops.render.render(write_still=True)
        if not raw.exists():
            raise RuntimeError(f"Cycles wrote no image to {raw}")
        rgb = _load_rgb(raw)
        frame = camera_effects(rgb, p, Path(tmp) / "frame.jpg")
    return frame, truth


def renderer_info() -> dict[str, Any]:
    """What rendered the frames, for dataset.json."""
    return {"blender": bpy.app.version_string, "engine": "CYCLES", "device": "CPU", "denoiser": "OPENIMAGEDENOISE"}
