"""The PixelLM pipeline: `segment`, `ask`, `chat` and `predict` over one image (PixelLM has no video path and no
visual prompts). Build it with `pixelwise.load(path)` on a folder whose config says `model_type: pixelwise_pixellm`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixelwise.core.errors import MediaError, PromptError
from pixelwise.core.results import Result
from pixelwise.models.pixellm.modeling_pixellm import PixelLMForSegmentation
from pixelwise.models.pixellm.processing_pixellm import PixelLMProcessor
from pixelwise.pipeline.base import Pipeline, Regions, normalize_regions, resolve_device
from pixelwise.pipeline.media import MediaLike, open_query_media

DEFAULT_MAX_NEW_TOKENS = 128  # PixelWorld answers: <= 5 targets x (description + token group)


class PixelLMPipeline(Pipeline):
    family = "pixellm"
    model_type = "pixelwise_pixellm"

    def __init__(self, model: PixelLMForSegmentation, processor: PixelLMProcessor, path: str | Path | None = None):
        self.model = model.eval()
        self.processor = processor
        self.path = Path(path) if path is not None else None

    @classmethod
    def from_pretrained(cls, path: str | Path, device: Any = "auto", dtype: Any = None) -> PixelLMPipeline:
        dev, dt = resolve_device(None if device == "auto" else device, dtype)
        processor = PixelLMProcessor.from_pretrained(path)
        model = PixelLMForSegmentation.from_pretrained(path, processor).to(dev, dt)
        return cls(model, processor, path)

    def _frame(self, media: MediaLike):
        qm = open_query_media(media, 1)
        if not qm.is_image and qm.num_frames > 1:
            raise MediaError(f"{qm.path or 'media'}: PixelLM is an image model; give an image or a single frame "
                             f"(this media has {qm.num_frames} frames)")
        return qm

    def _answer(self, media: MediaLike, question: str, max_new_tokens: int) -> Result:
        t0 = time.perf_counter()
        qm = self._frame(media)
        enc = self.processor.encode(qm.sampled.frames[0], question)
        pred = self.model.generate(enc, self.processor, max_new_tokens=max_new_tokens)
        result = self.processor.build_result(pred.generated_ids, pred.mask_logits, qm.size, pred.scores)
        result.frame_indices = list(qm.sampled.frame_indices)
        result.timings["total_s"] = time.perf_counter() - t0
        return result

    def segment(self, media: MediaLike, text: str, regions: Regions = None, *, num_frames: int = 1,
                propagate: str = "sampled", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, **_: Any) -> Result:
        """Masks of what `text` describes; one object per codebook group of the answer ("all red objects" -> one
        object per red object). A bare phrase is asked as "Please segment <phrase>."."""
        if normalize_regions(regions):
            raise PromptError("PixelLM takes no visual prompts (points, boxes or masks)")
        return self._answer(media, self.processor.segment_question(text), max_new_tokens)

    def ask(self, media: MediaLike, question: str, regions: Regions = None, *, options: Sequence[str] | None = None,
            max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, **_: Any) -> Result:
        if normalize_regions(regions):
            raise PromptError("PixelLM takes no visual prompts (points, boxes or masks)")
        if options:
            question = question + " Options: " + " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
        return self._answer(media, question, max_new_tokens)

    def chat(self, media: MediaLike, regions: Regions = None, **options: Any) -> PixelLMChat:
        return PixelLMChat(self, media)


class PixelLMChat:
    """Turns about one image. PixelLM was trained on single-turn questions, so each turn is answered on its own."""

    def __init__(self, pipe: PixelLMPipeline, media: MediaLike):
        self.pipe = pipe
        self.media = pipe._frame(media).sampled  # decoded once
        self.history: list[tuple[str, Result]] = []

    def send(self, text: str, regions: Regions = None, **options: Any) -> Result:
        result = self.pipe.ask(self.media, text, regions, **options)
        self.history.append((text, result))
        return result
