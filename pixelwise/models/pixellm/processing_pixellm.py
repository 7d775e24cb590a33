"""PixelLM processing: the shared Qwen2.5-VL processing plus the codebook-group answer format and `Result` building.

Answers: each dataset `[SEG]` (one per target, in target order) becomes the whole group `[SEG0][SEG1]...[SEG5]`
(released PixelLM separates the group with spaces; we write it contiguously, which costs fewer tokens and changes
nothing else). In a `Result` each group is shown as one `[SEG]` again and is the span of its object.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pixelwise.core.results import Result, SegObject
from pixelwise.models.pixellm.configuration_pixellm import PixelLMConfig, seg_token_names
from pixelwise.modules.vl_processing import IM_END, VLProcessor

DATASET_SEG = "[SEG]"
_GROUP0 = re.compile(r"\[SEG0?\]")


class PixelLMProcessor(VLProcessor):
    def __init__(self, tokenizer, *args, seg_token_num: int = 3, image_feature_scale_num: int = 2, **kwargs):
        self.seg_tokens = seg_token_names(seg_token_num, image_feature_scale_num)
        self.special_tokens = tuple(self.seg_tokens)
        super().__init__(tokenizer, *args, **kwargs)
        self.seg_token_ids = [self.token_id(t) for t in self.seg_tokens]

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        cfg = PixelLMConfig.from_pretrained(path)
        return super().from_pretrained(path, seg_token_num=cfg.seg_token_num,
                                       image_feature_scale_num=cfg.image_feature_scale_num, **kwargs)

    @property
    def group(self) -> str:
        return "".join(self.seg_tokens)

    def format_answer(self, answer: str) -> str:
        return answer.replace(DATASET_SEG, self.group) if len(self.seg_tokens) > 1 else answer

    def segment_question(self, text: str) -> str:
        """A referring expression or a full question -> the question the model was trained with."""
        t = text.strip()
        if t.endswith(("?", ".")) or t.lower().startswith(("segment", "please", "find", "detect")):
            return t
        return f"Please segment {t}."

    def build_result(self, generated_ids: Sequence[int], mask_logits, frame_size: tuple[int, int],
                     scores: Sequence[float] = ()) -> Result:
        """Generated ids + mask logits [K, H, W] -> `Result` with one object per codebook group, groups shown as
        `[SEG]`; object spans cover the `[SEG]` of its group."""
        ids = [int(i) for i in generated_ids]
        if ids and ids[-1] == self.im_end_id:
            ids = ids[:-1]
        text = self.decode(ids).replace(IM_END, "")
        text = text.replace(self.group, DATASET_SEG) if len(self.seg_tokens) > 1 else text
        spans = [(m.start(), m.end()) for m in re.finditer(re.escape(DATASET_SEG), text)]
        h, w = frame_size
        masks = np.asarray(mask_logits > 0) if len(mask_logits) else np.zeros((0, h, w), bool)
        objects = []
        for k in range(masks.shape[0]):
            span = spans[k] if k < len(spans) else None
            score = float(scores[k]) if k < len(scores) else None
            objects.append(SegObject(id=k, masks=masks[k][None], span=span, score=score))
        return Result(answer=text.strip(), objects=objects, frame_indices=[0], size=(int(h), int(w)))
