"""VITRON's back-end specialists behind one interface: `Backend.run(instruction, context) -> BackendOutput`.

* `SegmentationBackend` is the only neural back-end; it lives in the model (`modeling_vitron.VitronSegmentationHead`)
  because it is trained with the router. The pipeline calls it and puts its masks in the context.
* `EditingBackend`: remove / recolor / move an object in every frame of an image or clip, mask-guided.
  - with the PixelWorld scene graph of the media (`context.scene`), the segmented object is matched to a scene object
    and the edit is applied to the scene, which is re-rendered: the exact PixelWorld result when the mask is right;
  - otherwise pixels are edited: OpenCV inpainting (Telea) fills removed or vacated regions, recoloring keeps each
    pixel's shading relative to the object's dominant color, moving pastes the object's pixels at the new place.
  - `add` draws a new PixelWorld object (exact re-render with a scene; anti-aliased compositing without one).
* `GenerationBackend`: a scene description ("a red circle at the top left and a large blue square at the center")
  -> a PixelWorld scene -> rendered frames.
* `DiffusersBackend` (optional): a local `diffusers` text-to-image or inpainting pipeline. It never downloads
  (`local_files_only=True`), and `diffusers` is not a dependency: without it, constructing the back-end raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pixelwise.core.errors import CheckpointError, PixelwiseError
from pixelwise.data.pixelworld import vocab
from pixelwise.data.pixelworld.render import coverage, object_rgb, render
from pixelwise.data.pixelworld.scene import Obj, Scene, quantize
from pixelwise.data.pixelworld.vocab import COLORS as RGB
from pixelwise.models.vitron.instruction import COLORS, PLACES, Instruction

MOVE_FRACTION = 0.25  # PixelWorld moves shift a trajectory by a quarter of the frame
PLACE_XY = {"top left": (0.27, 0.27), "top right": (0.73, 0.27), "bottom left": (0.27, 0.73),
            "bottom right": (0.73, 0.73), "center": (0.5, 0.5)}
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon", "heart", "pentagon")
SIZES = ("small", "medium", "large")


class BackendError(PixelwiseError):
    """A back-end cannot execute an instruction on the given media."""


@dataclass
class BackendContext:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    masks: np.ndarray | None = None  # bool [T, H, W]: the segmented target (from the segmentation back-end)
    scene: Any = None  # pixelwise.data.pixelworld.scene.Scene of the media, when known


@dataclass
class BackendOutput:
    frames: np.ndarray | None = None  # edited / generated frames uint8 [T, H, W, 3]
    masks: np.ndarray | None = None  # bool [T, H, W]: the edited object on the output (empty after a removal)
    method: str = ""  # "scene" (exact re-render), "pixels" (mask-guided OpenCV), "render", "diffusers"
    info: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def run(self, instruction: Instruction, context: BackendContext) -> BackendOutput: ...


# ------------------------------------------------------------------------------------------------- objects


def parse_object(text: str) -> dict[str, str]:
    """"a medium green striped ring" -> {size, color, texture, shape} (defaults: medium, solid)."""
    words = re.findall(r"[a-z]+", text.lower())
    shape = next((w for w in words if w in SHAPES), None)
    if shape is None:
        raise BackendError(f"no shape in {text!r} (one of {', '.join(SHAPES)})")
    color = next((w for w in words if w in COLORS), None)
    if color is None:
        raise BackendError(f"no color in {text!r}")
    size = next((w for w in words if w in SIZES), "medium")
    texture = "striped" if "striped" in words else "dotted" if "dotted" in words else "solid"
    return {"shape": shape, "color": color, "size": size, "texture": texture}


def parse_scene_description(text: str) -> list[tuple[dict[str, str], str]]:
    """"a red circle at the top left and a large blue square in the center" -> [(object, place), ...]."""
    parts = re.split(r"\s*(?:,|;|\band\b)\s*", text.strip().rstrip("."))
    out = []
    for p in parts:
        if not p:
            continue
        m = re.match(r"(?P<o>.+?)\s+(?:at|in)\s+the\s+(?P<w>" + "|".join(PLACES) + r")$", p.strip(), re.I)
        if not m:
            raise BackendError(f"cannot place {p!r}: say '<object> at the <{' | '.join(PLACES)}>'")
        out.append((parse_object(m.group("o")), m.group("w").lower()))
    if not out:
        raise BackendError(f"empty scene description {text!r}")
    return out


def _new_obj(spec: dict[str, str], place: str, obj_id: int, z: int, width: int, height: int, num_frames: int):
    fx, fy = PLACE_XY[place]
    r = vocab.radius_for(spec["size"], width)
    return Obj(id=obj_id, shape=spec["shape"], color=spec["color"], size=spec["size"], texture=spec["texture"], z=z,
               x=quantize(np.full(num_frames, fx * width)), y=quantize(np.full(num_frames, fy * height)),
               r=quantize(np.full(num_frames, r)))


# ------------------------------------------------------------------------------------------------- editing


def match_scene_object(scene, masks: np.ndarray, min_iou: float = 0.3) -> int | None:
    """Id of the scene object whose visible masks best overlap `masks` [T, H, W] (IoU over all frames)."""

    _, vis, _ = render(scene)
    best, best_iou = None, min_iou
    m = masks.astype(bool)
    for i, o in enumerate(scene.objects):
        inter = np.logical_and(vis[i], m).sum()
        union = np.logical_or(vis[i], m).sum()
        iou = inter / union if union else 0.0
        if iou > best_iou:
            best, best_iou = o.id, iou
    return best


def _inpaint(frame: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    if not mask.any():
        return frame
    m = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    return cv2.inpaint(frame, m * 255, radius, cv2.INPAINT_TELEA)


def _recolor(frame: np.ndarray, mask: np.ndarray, color: str) -> np.ndarray:
    """Replace the object's hue by `color`, keeping each pixel's shading relative to the dominant color."""
    if not mask.any():
        return frame

    out = frame.astype(np.float32)
    px = out[mask]
    lum = px @ np.array([0.299, 0.587, 0.114], np.float32)
    dominant = float(np.median(lum)) or 1.0
    target = np.asarray(RGB[color], np.float32)
    out[mask] = np.clip(target[None] * (lum / dominant)[:, None], 0, 255)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _shift(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    out[yd, xd] = a[ys, xs]
    return out


class EditingBackend:
    name = "editing"

    def run(self, instruction: Instruction, context: BackendContext) -> BackendOutput:
        op = instruction.op
        if op == "add":
            return self._add(instruction, context)
        if op not in ("remove", "recolor", "move"):
            raise BackendError(f"editing back-end cannot run op {op!r}")
        if context.masks is None:
            raise BackendError(f"{op}: no target mask (the segmentation back-end found nothing)")
        if context.scene is not None:
            obj_id = match_scene_object(context.scene, context.masks)
            if obj_id is not None:
                return self._scene_edit(instruction, context.scene, obj_id)
        return self._pixel_edit(instruction, context.frames, context.masks)

    # -- exact: edit the scene graph and re-render
    def _scene_edit(self, ins: Instruction, scene, obj_id: int) -> BackendOutput:

        edited = scene.copy()
        o = edited.obj(obj_id)
        if ins.op == "remove":
            edited.objects = [x for x in edited.objects if x.id != obj_id]
        elif ins.op == "recolor":
            o.color = ins.arg
            o.color_change = None
        else:
            dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[ins.arg]
            o.x = quantize(o.x + dx * MOVE_FRACTION * edited.width)
            o.y = quantize(o.y + dy * MOVE_FRACTION * edited.height)
        frames, vis, _ = render(edited)
        ids = [x.id for x in edited.objects]
        masks = vis[ids.index(obj_id)] if obj_id in ids else np.zeros(frames.shape[:3], bool)
        return BackendOutput(frames, masks, "scene", {"object_id": obj_id, "scene": edited.to_json()})

    # -- mask-guided pixel editing
    def _pixel_edit(self, ins: Instruction, frames: np.ndarray, masks: np.ndarray) -> BackendOutput:
        out = frames.copy()
        new_masks = np.zeros_like(masks)
        T, H, W = masks.shape
        for t in range(T):
            m = masks[t]
            if ins.op == "remove":
                out[t] = _inpaint(frames[t], m)
            elif ins.op == "recolor":
                out[t] = _recolor(frames[t], m, ins.arg)
                new_masks[t] = m
            else:
                dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[ins.arg]
                sx, sy = int(round(dx * MOVE_FRACTION * W)), int(round(dy * MOVE_FRACTION * H))
                moved = _shift(m, sx, sy)
                pixels = _shift(frames[t], sx, sy)
                base = _inpaint(frames[t], m)
                base[moved] = pixels[moved]
                out[t] = base
                new_masks[t] = moved
        return BackendOutput(out, new_masks, "pixels", {})

    def _add(self, ins: Instruction, context: BackendContext) -> BackendOutput:

        spec = parse_object(ins.target)
        place = ins.arg or "center"
        T, H, W = context.frames.shape[:3]
        if context.scene is not None:
            scene = context.scene.copy()
            new_id = max((o.id for o in scene.objects), default=-1) + 1
            z = max((o.z for o in scene.objects), default=-1) + 1
            scene.objects.append(_new_obj(spec, place, new_id, z, scene.width, scene.height, scene.num_frames))
            frames, vis, _ = render(scene)
            return BackendOutput(frames, vis[-1], "scene", {"object_id": new_id, "scene": scene.to_json()})
        obj = _new_obj(spec, place, 0, 0, W, H, T)
        out = context.frames.copy()
        masks = np.zeros((T, H, W), bool)
        rgb = object_rgb(spec["color"])
        for t in range(T):
            cov = coverage(obj, t, H, W)
            if cov is None:
                continue
            patch, (x0, y0, x1, y1) = cov
            a = patch.astype(np.float32)[..., None] / 255.0
            region = out[t, y0:y1, x0:x1].astype(np.float32)
            out[t, y0:y1, x0:x1] = np.clip(region * (1 - a) + rgb[None, None] * a + 0.5, 0, 255).astype(np.uint8)
            masks[t, y0:y1, x0:x1] = patch >= 128
        return BackendOutput(out, masks, "pixels", {})


# ------------------------------------------------------------------------------------------------- generation


class GenerationBackend:
    """Text -> PixelWorld scene -> frames (flat gray background; `num_frames` static frames)."""

    name = "generation"

    def __init__(self, width: int = 128, height: int = 128, background: tuple[int, int, int] = (150, 150, 150)):
        self.width, self.height, self.background = width, height, background

    def scene_for(self, description: str, num_frames: int = 1):
        items = parse_scene_description(description)
        objs = [_new_obj(spec, place, i, i, self.width, self.height, num_frames) for i, (spec, place) in enumerate(items)]
        return Scene(self.width, self.height, num_frames, {"kind": "flat", "color": list(self.background), "seed": 0},
                     objs)

    def run(self, instruction: Instruction, context: BackendContext | None = None) -> BackendOutput:
        if instruction.op != "generate":
            raise BackendError(f"generation back-end cannot run op {instruction.op!r}")
        T = 1 if context is None else context.frames.shape[0]
        scene = self.scene_for(instruction.target, T)
        frames, vis, _ = render(scene)
        return BackendOutput(frames, vis.any(0), "render", {"scene": scene.to_json()})


class DiffusersBackend:
    """Optional adapter to a *local* diffusers pipeline folder (text-to-image, or inpainting for `remove`).

    Weights are never downloaded: the folder must exist and is opened with `local_files_only=True`.
    """

    name = "diffusers"

    def __init__(self, path: str | Path, device: str = "cpu", steps: int = 25):
        try:
            import diffusers  # noqa: F401
        except ImportError:
            raise BackendError("the diffusers back-end needs the optional 'diffusers' package "
                               "(pip install 'pixelwise[diffusers]')") from None
        p = Path(path)
        if not (p / "model_index.json").is_file():
            raise CheckpointError(f"{p}: not a local diffusers pipeline folder (no model_index.json)")
        from diffusers import DiffusionPipeline

        self.pipe = DiffusionPipeline.from_pretrained(str(p), local_files_only=True).to(device)
        self.steps = steps

    def run(self, instruction: Instruction, context: BackendContext) -> BackendOutput:
        from PIL import Image

        T, H, W = context.frames.shape[:3]
        if instruction.op == "generate":
            img = self.pipe(prompt=instruction.target, num_inference_steps=self.steps, height=H, width=W).images[0]
            return BackendOutput(np.asarray(img.convert("RGB"))[None], None, "diffusers")
        if instruction.op == "remove" and context.masks is not None:
            out = []
            for t in range(T):
                img = self.pipe(prompt="background", image=Image.fromarray(context.frames[t]),
                                mask_image=Image.fromarray(context.masks[t].astype(np.uint8) * 255),
                                num_inference_steps=self.steps).images[0]
                out.append(np.asarray(img.convert("RGB").resize((W, H))))
            return BackendOutput(np.stack(out), np.zeros_like(context.masks), "diffusers")
        raise BackendError(f"diffusers back-end: op {instruction.op!r} is not supported")
