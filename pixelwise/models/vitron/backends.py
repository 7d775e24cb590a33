"""VITRON's back-end specialists behind one interface: `Backend.run(instruction, context) -> BackendOutput`.

* `SegmentationBackend` is the only neural back-end; it lives in the model (`modeling_vitron.VitronSegmentationHead`)
  because it is trained with the router. The pipeline calls it and puts its masks in the context.
* `EditingBackend`: remove / recolor / move an object in every frame of an image or clip, mask-guided.
  - with the scene graph of the media (`context.scene`) and a world that renders it (`context.world`), the segmented
    object is matched to a scene object and the edit is applied to the scene, which is re-rendered: the exact
    result when the mask is right;
  - otherwise pixels are edited: OpenCV inpainting (Telea) fills removed or vacated regions, recoloring keeps each
    pixel's shading relative to the object's dominant color, moving pastes the object's pixels at the new place.
  - `add` draws a new object through the world (exact re-render with a scene; anti-aliased compositing without one).
* `GenerationBackend`: a scene description ("a red circle at the top left and a large blue square at the center")
  -> objects at places -> frames drawn by the world.

The world is handed in, not imported (models do not import `data`): any object with the `World` methods. VITRON's
config names its world (`world: "pixelwise.data.pixelworld.world:PixelWorldRenderer"` for the PixelWorld-trained
tiny model); without one, edits work on pixels and generation is refused with a `BackendError`.
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
from PIL import ImageColor

from pixelwise.core.errors import CheckpointError, PixelwiseError
from pixelwise.models.vitron.instruction import COLORS, PLACES, Instruction

MOVE_FRACTION = 0.25  # a move shifts the object by a quarter of the frame (as PixelWorld's moves do)
STEPS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon", "heart", "pentagon")
SIZES = ("small", "medium", "large")


class BackendError(PixelwiseError):
    """A back-end cannot execute an instruction on the given media."""


class World(Protocol):
    """What the scene-based back-ends draw with (`pixelwise.data.pixelworld.world.PixelWorldRenderer`)."""

    def color_rgb(self, color: str) -> np.ndarray: ...
    def scene(self, scene: Any) -> Any: ...
    def match(self, scene: Any, masks: np.ndarray) -> int | None: ...
    def edit(self, scene: Any, op: str, obj_id: int, arg: str | None) -> tuple[np.ndarray, np.ndarray, dict]: ...
    def add(self, scene: Any, spec: dict[str, str], place: str) -> tuple[np.ndarray, np.ndarray, dict]: ...
    def composite(self, frames: np.ndarray, spec: dict[str, str], place: str) -> tuple[np.ndarray, np.ndarray]: ...
    def generate(self, items: list[tuple[dict[str, str], str]], width: int, height: int, num_frames: int = 1
                 ) -> tuple[np.ndarray, np.ndarray, dict]: ...


@dataclass
class BackendContext:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    masks: np.ndarray | None = None  # bool [T, H, W]: the segmented target (from the segmentation back-end)
    scene: Any = None  # the media's scene graph in the world's format (e.g. a PixelWorld `Scene`), when known
    world: World | None = None  # what draws scenes and objects; None: pixel edits only

    def require_world(self, what: str) -> World:
        if self.world is None:
            raise BackendError(f"{what} needs a world to draw in; this model names none (config 'world') and none "
                               "was given (VitronPipeline(..., world=...))")
        return self.world


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


# ------------------------------------------------------------------------------------------------- editing


def _inpaint(frame: np.ndarray, mask: np.ndarray, radius: int = 3) -> np.ndarray:
    if not mask.any():
        return frame
    m = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
    return cv2.inpaint(frame, m * 255, radius, cv2.INPAINT_TELEA)


def _recolor(frame: np.ndarray, mask: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Replace the object's hue by the RGB `target`, keeping each pixel's shading relative to the dominant color."""
    if not mask.any():
        return frame

    out = frame.astype(np.float32)
    px = out[mask]
    lum = px @ np.array([0.299, 0.587, 0.114], np.float32)
    dominant = float(np.median(lum)) or 1.0
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
        if context.scene is not None and context.world is not None:
            obj_id = context.world.match(context.scene, context.masks)
            if obj_id is not None:
                frames, masks, scene = context.world.edit(context.scene, instruction.op, obj_id, instruction.arg)
                return BackendOutput(frames, masks, "scene", {"object_id": obj_id, "scene": scene})
        return self._pixel_edit(instruction, context)

    # -- mask-guided pixel editing
    def _pixel_edit(self, ins: Instruction, context: BackendContext) -> BackendOutput:
        frames, masks = context.frames, context.masks
        if ins.op == "recolor":
            # the world's own colour for the name, else the CSS colour of that name
            rgb = context.world.color_rgb(ins.arg) if context.world is not None else ImageColor.getrgb(ins.arg)
            target = np.asarray(rgb, np.float32)
        out = frames.copy()
        new_masks = np.zeros_like(masks)
        T, H, W = masks.shape
        for t in range(T):
            m = masks[t]
            if ins.op == "remove":
                out[t] = _inpaint(frames[t], m)
            elif ins.op == "recolor":
                out[t] = _recolor(frames[t], m, target)
                new_masks[t] = m
            else:
                dx, dy = STEPS[ins.arg]
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
        world = context.require_world("adding an object")
        if context.scene is not None:
            frames, masks, scene = world.add(context.scene, spec, place)
            return BackendOutput(frames, masks, "scene", {"scene": scene})
        frames, masks = world.composite(context.frames, spec, place)
        return BackendOutput(frames, masks, "pixels", {})


# ------------------------------------------------------------------------------------------------- generation


class GenerationBackend:
    """Text -> objects at places -> frames drawn by the world (flat gray background; static frames)."""

    name = "generation"

    def __init__(self, width: int = 128, height: int = 128):
        self.width, self.height = width, height

    def run(self, instruction: Instruction, context: BackendContext) -> BackendOutput:
        if instruction.op != "generate":
            raise BackendError(f"generation back-end cannot run op {instruction.op!r}")
        world = context.require_world("generation")
        items = parse_scene_description(instruction.target)
        frames, masks, scene = world.generate(items, self.width, self.height, context.frames.shape[0])
        return BackendOutput(frames, masks, "render", {"scene": scene})


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
