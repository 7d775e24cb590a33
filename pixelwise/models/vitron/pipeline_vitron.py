"""`VitronPipeline`: route a request with the LLM front end, then run the back-end its instruction names.

    pipe = VitronPipeline.from_pretrained("pixelwise/checkpoints/vitron-tiny")
    r = pipe.ask("clip.mp4", "Remove the blue square.")     # r.extras["edited_frames"]: uint8 [T, H, W, 3]
    r = pipe.segment("image.png", "the red star")            # r.objects[0].masks
    r = pipe.generate("a red circle at the top left")         # r.extras["edited_frames"] = generated frames

Every call returns the core `Result`: the router's text as `answer` (the structured command included), the
segmented target as `objects[0]` (on the *source* frames), and in `extras`: `instruction` (op, target, arg,
module), `edited_frames` and `edit_method` for editing/generation, `edited_masks` (the object on the output).
A router answer that is not a valid command (`InstructionError`) is returned as text with `extras["error"]`.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.core.clip import Clip
from pixelwise.core.errors import ConfigError, PromptError
from pixelwise.core.prompts import VisualPrompt
from pixelwise.core.results import Result, SegObject
from pixelwise.models.vitron.backends import BackendContext, BackendError, EditingBackend, GenerationBackend
from pixelwise.models.vitron.configuration_vitron import REGION_TOKEN, SIGNAL_TOKEN
from pixelwise.models.vitron.instruction import Instruction, InstructionError, parse_instruction
from pixelwise.models.vitron.modeling_vitron import VitronModel
from pixelwise.models.vitron.processing_vitron import VitronProcessor
from pixelwise.modules.patches import patchify_frames
from pixelwise.pipeline.base import (
    DEFAULT_NUM_FRAMES,
    Pipeline,
    Regions,
    check_propagate,
    check_region_names,
    normalize_regions,
    resolve_device,
)
from pixelwise.pipeline.media import MediaLike, QueryMedia, open_query_media

BLANK = (150, 150, 150)


def segmentation_question(text: str) -> str:
    t = text.strip()
    return t if t.endswith(("?", ".", "!")) else f"Please segment {t}."


def with_options(question: str, options: Sequence[str] | None) -> str:
    if not options:
        return question
    return question + " " + " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))


def load_world(spec: str, source: str = "config") -> Any:
    """A world named `"module:Class"` in VITRON's config -> an instance. Only pixelwise's own modules: a config from
    the Hub must not name code to import."""
    module, _, name = spec.partition(":")
    if not (module.startswith("pixelwise.") and name.isidentifier()):
        raise ConfigError(f"{source}: world {spec!r} must be 'pixelwise.<module>:<Class>'")
    try:
        return getattr(importlib.import_module(module), name)()
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{source}: world {spec!r} cannot be loaded: {e}") from None


def name_regions(question: str, ids: Sequence[int]) -> str:
    """`[k]` (pipeline convention) -> `<region>` (VITRON's slot, filled by the regions in order)."""
    if REGION_TOKEN in question:
        return question
    for k in ids:
        question = re.sub(rf"\[{k}\]", REGION_TOKEN, question)
    return question


class VitronPipeline(Pipeline):
    family = "vitron"

    def __init__(self, model: VitronModel, processor: VitronProcessor, path: str | Path | None = None,
                 max_new_tokens: int = 64, constrained: bool = True, backends: dict[str, Any] | None = None,
                 world: Any = None):
        """`world`: what the editing and generation back-ends draw in (`backends.World`), e.g.
        `pixelwise.data.pixelworld.world.PixelWorldRenderer()`; `from_pretrained` loads the one the config names."""
        self.model = model.eval()
        self.processor = processor
        self.path = None if path is None else Path(path)
        self.max_new_tokens = max_new_tokens
        self.constrained = constrained
        size = model.config.image_size
        self.world = world
        self.backends: dict[str, Any] = {"editing": EditingBackend(), "generation": GenerationBackend(size, size)}
        self.backends.update(backends or {})

    @classmethod
    def from_pretrained(cls, path: str | Path, device: Any = "auto", dtype: Any = None) -> VitronPipeline:
        dev, dt = resolve_device(device, dtype)
        model = VitronModel.from_pretrained(path, device=dev, dtype=dt)
        world = load_world(model.config.world, f"{path}/config.json") if model.config.world else None
        return cls(model, VitronProcessor.from_pretrained(path, model.config), path, world=world)

    # ------------------------------------------------------------------ routing + execution
    def _run(self, qm: QueryMedia, request: str, regions: list[tuple[int, VisualPrompt]] = (), propagate: str = "sampled",
             history: Sequence[tuple[str, str]] = (), scene: Any = None, max_new_tokens: int | None = None,
             frames_override: np.ndarray | None = None) -> Result:
        """Route on the frames read (temporally pooled), then segment / edit. Edits always cover every frame of the
        media (an edited clip with frames missing is of no use); segmentation covers the frames read, or every
        frame with `propagate="all"`."""
        t0 = time.perf_counter()
        clip = qm.sampled if frames_override is None else Clip(frames_override[qm.positions], fps=qm.sampled.fps,
                                                               frame_indices=list(qm.sampled.frame_indices))
        for _, r in regions:
            r.validate(clip.height, clip.width, clip.num_frames)
        q = name_regions(request, [k for k, _ in regions])
        inp = self.processor.build(clip.frames, q, prompts=[r for _, r in regions], history=history)
        allowed = (lambda out: self.processor.allowed_next(out, inp.question_ids)) if self.constrained else None
        gen = self.model.generate(inp, max_new_tokens or self.max_new_tokens, allowed)
        answer = self.processor.decode_answer(gen.ids)
        t_route = time.perf_counter()
        try:
            ins = parse_instruction(answer)
            error = None
        except InstructionError as e:
            ins, error = None, f"router output is not a valid instruction: {e}"
        editing = ins is not None and ins.op != "segment"
        if editing or (propagate == "all" and not qm.is_image and qm.num_frames != len(qm.positions)):
            frames = frames_override if frames_override is not None else (
                np.stack(list(qm.iter_frames())) if qm.num_frames != len(qm.positions) else clip.frames)
            numbers = qm.frame_numbers()
        else:
            frames, numbers = clip.frames, list(clip.frame_indices)
        if frames_override is not None or len(numbers) == len(qm.positions):
            media = Clip(frames, fps=qm.sampled.fps, frame_indices=numbers)
        else:
            media = qm.all_frames_view()
        result = Result(answer=answer, frame_indices=numbers, size=clip.size, media=media)
        if error:
            result.extras["error"] = error
        masks = None
        if ins is not None:
            result.extras["instruction"] = {"module": ins.module, "op": ins.op, "target": ins.target, "arg": ins.arg}
            if ins.needs_signal:
                if gen.signal is None:
                    result.extras["error"] = f"{ins.op}: the router wrote no {SIGNAL_TOKEN} embedding"
                else:
                    masks = self._segment(gen.signal, frames, ins.target)
                    i = answer.find(SIGNAL_TOKEN)
                    span = (i, i + len(SIGNAL_TOKEN)) if i >= 0 else None
                    result.objects.append(SegObject(0, masks, span, label=ins.target))
            if editing and "error" not in result.extras:
                self._execute(ins, frames, masks, scene, result)
        result.timings = {"route_s": t_route - t0, "total_s": time.perf_counter() - t0}
        return result

    @torch.no_grad()
    def _segment(self, signal: torch.Tensor, frames: np.ndarray, target: str, chunk: int = 16) -> np.ndarray:
        """The segmentation back-end over every given frame (encoded in chunks) for the instruction's `target`
        words: bool [T, H, W]."""
        cfg = self.model.config
        words = torch.tensor(self.processor.text.encode(target), dtype=torch.long)
        queries = self.model.seg_queries(signal[None], [words])
        out = []
        for s in range(0, len(frames), chunk):
            patches, grid = patchify_frames(frames[s: s + chunk], cfg.image_size, cfg.patch_size)
            feats = self.model.encode_frames(patches, grid)
            logits = self.model.segment(signal[None], feats, grid, frames.shape[1:3], patches, queries=queries)[0]
            out.append((logits > 0).cpu().numpy())
        return np.concatenate(out)

    def _execute(self, ins: Instruction, frames: np.ndarray, masks: np.ndarray | None, scene: Any,
                 result: Result) -> None:
        backend = self.backends.get(ins.module)
        if backend is None:
            result.extras["error"] = f"no back-end for module {ins.module!r}"
            return
        try:
            out = backend.run(ins, BackendContext(frames, masks, scene, self.world))
        except BackendError as e:
            result.extras["error"] = str(e)
            return
        result.extras["edited_frames"] = out.frames
        result.extras["edit_method"] = out.method
        if out.masks is not None:
            result.extras["edited_masks"] = out.masks

    # ------------------------------------------------------------------ API
    def segment(self, media: MediaLike, text: str, regions: Regions = None, *, num_frames: int = DEFAULT_NUM_FRAMES,
                frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                max_new_tokens: int | None = None, progress: Any = None) -> Result:
        qm = open_query_media(media, num_frames, frame_indices)
        return self._run(qm, segmentation_question(text), normalize_regions(regions), check_propagate(propagate),
                         max_new_tokens=max_new_tokens)

    def ask(self, media: MediaLike, question: str, regions: Regions = None, *, options: Sequence[str] | None = None,
            num_frames: int = DEFAULT_NUM_FRAMES, frame_indices: Sequence[int] | None = None,
            propagate: str = "sampled", max_new_tokens: int | None = None, progress: Any = None,
            scene: Any = None) -> Result:
        """Any request: a question (text answer), "Segment ...", an edit ("Remove the blue square."), "Draw ...".
        `scene`: the media's scene graph in the world's format (a PixelWorld `Scene` or its JSON) for exact
        re-rendered edits; ignored without a world."""
        if scene is not None and self.world is not None:
            scene = self.world.scene(scene)
        qm = open_query_media(media, num_frames, frame_indices)
        items = normalize_regions(regions)
        check_region_names(question, [k for k, _ in items])
        return self._run(qm, with_options(question, options), items, check_propagate(propagate),
                         scene=scene, max_new_tokens=max_new_tokens)

    def edit(self, media: MediaLike, request: str, *, num_frames: int = DEFAULT_NUM_FRAMES, scene: Any = None
             ) -> Result:
        """`ask` for an editing request; the edited frames (every frame of the media) are in
        `result.extras["edited_frames"]`."""
        return self.ask(media, request, num_frames=num_frames, scene=scene)

    def generate(self, description: str, num_frames: int = 1) -> Result:
        """Text-to-image through the router (on a blank canvas): "a red circle at the top left" is asked as
        "Generate an image of a red circle at the top left." and drawn by the generation back-end in the world."""
        size = self.model.config.image_size
        blank = np.full((num_frames, size, size, 3), BLANK, np.uint8)
        text = description.strip()
        request = text if text.endswith(".") else f"Generate an image of {text}."
        clip = Clip(blank, fps=None if num_frames == 1 else 8.0)
        return self._run(open_query_media(clip, num_frames), request)

    def chat(self, media: MediaLike, *, num_frames: int = DEFAULT_NUM_FRAMES,
             frame_indices: Sequence[int] | None = None, propagate: str = "sampled", progress: Any = None) -> VitronChat:
        return VitronChat(self, open_query_media(media, num_frames, frame_indices), check_propagate(propagate))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "backends": sorted(self.backends), "world": getattr(self.world, "name", None)}


class VitronChat:
    """A conversation; after an edit, later turns see (and edit) the edited media."""

    def __init__(self, pipe: VitronPipeline, qm: QueryMedia, propagate: str):
        self.pipe, self.qm, self.propagate = pipe, qm, propagate
        self.history: list[tuple[str, str]] = []
        self.frames: np.ndarray | None = None  # every frame after the last edit

    def send(self, text: str, regions: Regions = None, *, options: Sequence[str] | None = None,
             max_new_tokens: int | None = None) -> Result:
        if not text or not text.strip():
            raise PromptError("empty chat message")
        r = self.pipe._run(self.qm, with_options(text, options), normalize_regions(regions), self.propagate,
                           history=self.history, max_new_tokens=max_new_tokens, frames_override=self.frames)
        self.history.append((text, r.answer))
        edited = r.extras.get("edited_frames")
        if edited is not None and edited.shape[0] == self.qm.num_frames:
            self.frames = edited
        return r
