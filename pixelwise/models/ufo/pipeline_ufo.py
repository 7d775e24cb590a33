"""The UFO pipeline: `segment` (masks by retrieval), `detect` (parallel grid decoding: boxes + masks for every
object of a kind), `ask`, `chat` and `predict` over one image. Build it with `pixelwise.load(path)` on a folder whose
config says `model_type: pixelwise_ufo`. `segment` routes detection questions ("Detect every star.") to `detect`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixelwise.core.errors import PromptError
from pixelwise.core.masks import box_iou
from pixelwise.core.results import Result, SegObject
from pixelwise.models.ufo.modeling_ufo import GridDetection, UFOForConditionalGeneration
from pixelwise.models.ufo.processing_ufo import UFOProcessor, is_parallel_query
from pixelwise.pipeline.base import (
    ImageQueryPipeline,
    Progress,
    Regions,
    check_region_names,
    normalize_regions,
    resolve_device,
)
from pixelwise.pipeline.media import MediaLike

DEFAULT_MAX_NEW_TOKENS = 128  # PixelWorld answers: <= 5 targets x (description + token group)


def nms(boxes: list[tuple[float, float, float, float]], scores: list[float], iou: float) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first."""
    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        if all(box_iou(boxes[i], boxes[j]) <= iou for j in keep):
            keep.append(i)
    return keep


class UFOPipeline(ImageQueryPipeline):
    family = "ufo"
    model_type = "pixelwise_ufo"
    model_label = "this UFO model"

    def __init__(self, model: UFOForConditionalGeneration, processor: UFOProcessor, path: str | Path | None = None):
        self.model = model.eval()
        self.processor = processor
        self.path = Path(path) if path is not None else None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: Any = "auto", dtype: Any = None) -> UFOPipeline:
        dev, dt = resolve_device(None if device == "auto" else device, dtype)
        processor = UFOProcessor.from_pretrained(path)
        model = UFOForConditionalGeneration.from_pretrained(path, processor).to(dev, dt)
        return cls(model, processor, path)

    def detect(self, media: MediaLike, text: str, *, score_threshold: float | None = None,
               nms_iou: float | None = None) -> Result:
        """Every object the text names, decoded in parallel from the K x K grid of local tokens in one call: each
        kept grid answer is one object with `box` (pixels) and its retrieved mask; the answer text lists the boxes
        in reading order, as PixelWorld's detection answers do."""
        t0 = time.perf_counter()
        cfg = self.model.config
        thr = cfg.grid_score_threshold if score_threshold is None else score_threshold
        iou = cfg.grid_nms_iou if nms_iou is None else nms_iou
        qm = self._frame(media)
        h, w = qm.size
        enc = self.processor.encode(qm.sampled.frames[0], text)
        found: list[tuple[tuple[float, float, float, float], GridDetection]] = []
        for det in self.model.generate_grid(enc, self.processor):
            boxes = self.processor.parse_boxes(self.processor.decode(det.ids), (h, w))
            if boxes and det.score >= thr:
                found.append((boxes[0][0], det))
        keep = nms([b for b, _ in found], [d.score for _, d in found], iou)
        kept = sorted((found[i] for i in keep), key=lambda bd: (round(bd[0][1] / max(h, 1) * 4), bd[0][0]))
        answer, objects = "", []
        for k, (box, det) in enumerate(kept):
            text_box = self.processor.box_text(box, (h, w))
            span = (len(answer), len(answer) + len(text_box))
            answer += text_box
            mask = (det.mask_logits > 0).numpy()[None] if det.mask_logits is not None else np.zeros((1, h, w), bool)
            objects.append(SegObject(id=k, masks=mask, span=span, score=det.score, box=box))
        result = Result(answer=answer or "Nothing found.", objects=objects, frame_indices=list(qm.sampled.frame_indices),
                        size=(h, w))
        result.timings["total_s"] = time.perf_counter() - t0
        result.extras["grid_points"] = cfg.grid_size ** 2
        return result

    def segment(self, media: MediaLike, text: str, regions: Regions = None, *, num_frames: int = 1,
                frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: Progress | None = None) -> Result:
        """Masks of what `text` describes (one object per `<MASK>` group). Detection questions ("Detect every
        star.") go to `detect`; a bare phrase is asked as "Please segment <phrase>."."""
        if normalize_regions(regions):
            raise PromptError("UFO takes no visual prompts (points, boxes or masks)")
        check_region_names(text, [])
        self._image_query(num_frames, propagate)  # one frame read: nothing to propagate, `progress` never called
        if is_parallel_query(text):
            return self.detect(media, text.strip())
        return self._answer(media, self.processor.segment_question(text), max_new_tokens, frame_indices)

    def ask(self, media: MediaLike, question: str, regions: Regions = None, *, options: Sequence[str] | None = None,
            num_frames: int = 1, frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
            max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: Progress | None = None) -> Result:
        """A free question; grounding questions are answered with `<box>` text (objects with `box`, empty mask)."""
        if normalize_regions(regions):
            raise PromptError("UFO takes no visual prompts (points, boxes or masks)")
        check_region_names(question, [])
        self._image_query(num_frames, propagate)
        if is_parallel_query(question):
            return self.detect(media, question.strip())
        if options:
            question = question + " Options: " + " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
        return self._answer(media, question, max_new_tokens, frame_indices)

    def chat(self, media: MediaLike, *, num_frames: int = 1, frame_indices: Sequence[int] | None = None,
             propagate: str = "sampled", progress: Progress | None = None) -> UFOChat:
        self._image_query(num_frames, propagate)
        return UFOChat(self, media, frame_indices)


class UFOChat:
    """Turns about one image, each answered on its own (the model was trained on single-turn questions)."""

    def __init__(self, pipe: UFOPipeline, media: MediaLike,
                 frame_indices: Sequence[int] | None = None):
        self.pipe = pipe
        self.media = pipe._frame(media, frame_indices).sampled
        self.history: list[tuple[str, Result]] = []

    def send(self, text: str, regions: Regions = None, *, options: Sequence[str] | None = None,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Result:
        result = self.pipe.ask(self.media, text, regions, options=options, max_new_tokens=max_new_tokens)
        self.history.append((text, result))
        return result
