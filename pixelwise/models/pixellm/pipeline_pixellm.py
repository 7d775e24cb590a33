"""The PixelLM pipeline: `segment`, `ask`, `chat` and `predict` over one image (PixelLM has no video path and no
visual prompts). Build it with `pixelwise.load(path)` on a folder whose config says `model_type: pixelwise_pixellm`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pixelwise.core.errors import PromptError
from pixelwise.core.results import Result
from pixelwise.models.pixellm.modeling_pixellm import PixelLMForSegmentation
from pixelwise.models.pixellm.processing_pixellm import PixelLMProcessor
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


class PixelLMPipeline(ImageQueryPipeline):
    family = "pixellm"
    model_type = "pixelwise_pixellm"
    model_label = "PixelLM"

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

    def segment(self, media: MediaLike, text: str, regions: Regions = None, *, num_frames: int = 1,
                frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
                max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: Progress | None = None) -> Result:
        """Masks of what `text` describes; one object per codebook group of the answer ("all red objects" -> one
        object per red object). A bare phrase is asked as "Please segment <phrase>."."""
        if normalize_regions(regions):
            raise PromptError("PixelLM takes no visual prompts (points, boxes or masks)")
        check_region_names(text, [])
        self._image_query(num_frames, propagate)  # one frame read: nothing to propagate, `progress` never called
        return self._answer(media, self.processor.segment_question(text), max_new_tokens, frame_indices)

    def ask(self, media: MediaLike, question: str, regions: Regions = None, *, options: Sequence[str] | None = None,
            num_frames: int = 1, frame_indices: Sequence[int] | None = None, propagate: str = "sampled",
            max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, progress: Progress | None = None) -> Result:
        if normalize_regions(regions):
            raise PromptError("PixelLM takes no visual prompts (points, boxes or masks)")
        check_region_names(question, [])
        self._image_query(num_frames, propagate)
        if options:
            question = question + " Options: " + " ".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options))
        return self._answer(media, question, max_new_tokens, frame_indices)

    def chat(self, media: MediaLike, *, num_frames: int = 1, frame_indices: Sequence[int] | None = None,
             propagate: str = "sampled", progress: Progress | None = None) -> PixelLMChat:
        self._image_query(num_frames, propagate)
        return PixelLMChat(self, media, frame_indices)


class PixelLMChat:
    """Turns about one image. PixelLM was trained on single-turn questions, so each turn is answered on its own."""

    def __init__(self, pipe: PixelLMPipeline, media: MediaLike,
                 frame_indices: Sequence[int] | None = None):
        self.pipe = pipe
        self.media = pipe._frame(media, frame_indices).sampled  # decoded once
        self.history: list[tuple[str, Result]] = []

    def send(self, text: str, regions: Regions = None, *, options: Sequence[str] | None = None,
             max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> Result:
        result = self.pipe.ask(self.media, text, regions, options=options, max_new_tokens=max_new_tokens)
        self.history.append((text, result))
        return result
