"""PixelWorld as a world that an editing or generation back-end draws in (VITRON's `world`, named in its config).

A back-end that edits media whose scene graph is known, or draws a new scene from a description, needs the
scene format and the renderer; the model packages may not import `data`, so they receive this object instead
(`pixelwise.models.vitron.backends.World` is the interface). Every method is plain data in, plain data out:
scenes as `Scene` (or their JSON), frames uint8 [T, H, W, 3], masks bool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pixelwise.data.pixelworld import vocab
from pixelwise.data.pixelworld.render import coverage, object_rgb, render
from pixelwise.data.pixelworld.scene import Obj, Scene, quantize

MOVE_FRACTION = 0.25  # PixelWorld moves shift a trajectory by a quarter of the frame
PLACE_XY = {"top left": (0.27, 0.27), "top right": (0.73, 0.27), "bottom left": (0.27, 0.73),
            "bottom right": (0.73, 0.73), "center": (0.5, 0.5)}
STEPS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


class PixelWorldRenderer:
    """Scene edits re-rendered exactly, new scenes from object specs, objects composited onto frames."""

    name = "pixelworld"

    def color_rgb(self, color: str) -> np.ndarray:
        return np.asarray(vocab.COLORS[color], np.float32)

    def scene(self, scene: Scene | dict) -> Scene:
        return scene if isinstance(scene, Scene) else Scene.from_json(scene)

    def match(self, scene: Scene, masks: np.ndarray, min_iou: float = 0.3) -> int | None:
        """Id of the scene object whose visible masks best overlap `masks` [T, H, W] (IoU over all frames)."""
        _, vis, _ = render(scene)
        best, best_iou = None, min_iou
        m = masks.astype(bool)
        for i, o in enumerate(scene.objects):
            union = np.logical_or(vis[i], m).sum()
            iou = np.logical_and(vis[i], m).sum() / union if union else 0.0
            if iou > best_iou:
                best, best_iou = o.id, iou
        return best

    def edit(self, scene: Scene, op: str, obj_id: int, arg: str | None = None
             ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """remove / recolor (arg: a colour) / move (arg: left|right|up|down) one object -> (frames, its masks on the
        result (empty after a removal), the edited scene's JSON)."""
        edited = scene.copy()
        o = edited.obj(obj_id)
        if op == "remove":
            edited.objects = [x for x in edited.objects if x.id != obj_id]
        elif op == "recolor":
            o.color, o.color_change = arg, None
        elif op == "move":
            dx, dy = STEPS[arg]
            o.x = quantize(o.x + dx * MOVE_FRACTION * edited.width)
            o.y = quantize(o.y + dy * MOVE_FRACTION * edited.height)
        else:
            raise ValueError(f"PixelWorld cannot {op!r} an object (remove, recolor, move)")
        frames, vis, _ = render(edited)
        ids = [x.id for x in edited.objects]
        masks = vis[ids.index(obj_id)] if obj_id in ids else np.zeros(frames.shape[:3], bool)
        return frames, masks, edited.to_json()

    def add(self, scene: Scene, spec: dict[str, str], place: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """A new object (spec: shape, color, size, texture) at a named place, drawn on top -> (frames, its masks,
        the scene's JSON)."""
        scene = scene.copy()
        new_id = max((o.id for o in scene.objects), default=-1) + 1
        z = max((o.z for o in scene.objects), default=-1) + 1
        scene.objects.append(_new_obj(spec, place, new_id, z, scene.width, scene.height, scene.num_frames))
        frames, vis, _ = render(scene)
        return frames, vis[-1], scene.to_json()

    def composite(self, frames: np.ndarray, spec: dict[str, str], place: str) -> tuple[np.ndarray, np.ndarray]:
        """The object drawn anti-aliased over arbitrary frames (no scene graph) -> (frames, its masks)."""
        t_n, h, w = frames.shape[:3]
        obj = _new_obj(spec, place, 0, 0, w, h, t_n)
        out = frames.copy()
        masks = np.zeros((t_n, h, w), bool)
        rgb = object_rgb(spec["color"])
        for t in range(t_n):
            cov = coverage(obj, t, h, w)
            if cov is None:
                continue
            patch, (x0, y0, x1, y1) = cov
            a = patch.astype(np.float32)[..., None] / 255.0
            region = out[t, y0:y1, x0:x1].astype(np.float32)
            out[t, y0:y1, x0:x1] = np.clip(region * (1 - a) + rgb[None, None] * a + 0.5, 0, 255).astype(np.uint8)
            masks[t, y0:y1, x0:x1] = patch >= 128
        return out, masks

    def generate(self, items: list[tuple[dict[str, str], str]], width: int, height: int, num_frames: int = 1,
                 background: tuple[int, int, int] = (150, 150, 150)) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(spec, place) pairs -> a static scene on a flat background -> (frames, union of the objects' masks, the
        scene's JSON)."""
        objs = [_new_obj(spec, place, i, i, width, height, num_frames) for i, (spec, place) in enumerate(items)]
        scene = Scene(width, height, num_frames, {"kind": "flat", "color": list(background), "seed": 0}, objs)
        frames, vis, _ = render(scene)
        return frames, vis.any(0), scene.to_json()


def _new_obj(spec: dict[str, str], place: str, obj_id: int, z: int, width: int, height: int, num_frames: int) -> Obj:
    fx, fy = PLACE_XY[place]
    r = vocab.radius_for(spec["size"], width)
    return Obj(id=obj_id, shape=spec["shape"], color=spec["color"], size=spec["size"], texture=spec["texture"], z=z,
               x=quantize(np.full(num_frames, fx * width)), y=quantize(np.full(num_frames, fy * height)),
               r=quantize(np.full(num_frames, r)))
