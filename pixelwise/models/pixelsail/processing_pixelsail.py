"""Pixel-SAIL inputs: one image -> raw patches + a ChatML token sequence with the image block, M-RoPE ids and the
per-patch visual-prompt ids; generated ids -> answer text with `[SEG]` spans.

Sequence (paper §3, with Qwen's vision tokens as <vision>/<vpatch>/</vision>):

    <|im_start|>user\\n <|vision_start|> <|image_pad|> x (h*w) <|vision_end|> \\n QUESTION <|im_end|>\\n
    <|im_start|>assistant\\n ANSWER <|im_end|>

Positions are 3-component (t, y, x): text tokens carry one running id on all three axes; patch (r, c) gets
(s, s + r, s + c) with s the id after <|vision_start|>; text after the image continues from s + max(h, w).
Region prompts: prompt k is written `<Promptk>` in the question (PixelWorld's `<region>` is rewritten) and every
patch it covers gets the id k (later prompts win on overlaps); other patches get -1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pixelwise.core.errors import CheckpointError, PromptError
from pixelwise.core.prompts import VisualPrompt
from pixelwise.models.pixelsail.configuration_pixelsail import (
    IM_END,
    IM_START,
    SEG_TOKEN,
    VISION_END,
    VISION_PATCH,
    VISION_START,
    PixelSailConfig,
    prompt_token,
)
from pixelwise.modules.chat_text import ChatText
from pixelwise.modules.patches import patch_coverage, patchify_frames, region_masks
from pixelwise.modules.transformer import grid_positions, text_positions

REGION_PLACEHOLDER = "<region>"


@dataclass
class PixelSailInputs:
    """One sample (no batch dim). `labels_mask` marks the answer tokens whose prediction is supervised."""

    input_ids: torch.Tensor  # long [L]
    position_ids: torch.Tensor  # long [3, L]
    patches: torch.Tensor  # float [h*w, 3*P*P]
    grid: tuple[int, int]
    vision_span: tuple[int, int]  # [start, end) of the patch tokens
    prompt_ids: torch.Tensor  # long [h*w], -1 = no prompt
    labels_mask: torch.Tensor  # bool [L]
    frame_size: tuple[int, int]
    prompt_token_ids: list[int] = field(default_factory=list)  # the <Promptk> used, in prompt order

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


class PixelSailProcessor:
    def __init__(self, text: ChatText, config: PixelSailConfig):
        self.text = text
        self.config = config
        ids = config.token_ids
        self.seg_id = ids[SEG_TOKEN]
        self.im_end_id = ids[IM_END]
        self.patch_id = ids[VISION_PATCH]

    @classmethod
    def from_pretrained(cls, path: str | Path, config: PixelSailConfig | None = None) -> PixelSailProcessor:
        config = config or PixelSailConfig.from_pretrained(path)
        text = ChatText.from_file(Path(path) / "tokenizer.json")
        for tok, i in config.token_ids.items():
            if text.tok.token_to_id(tok) != i:
                raise CheckpointError(f"{path}: tokenizer id of {tok!r} is {text.tok.token_to_id(tok)}, "
                                      f"config says {i}")
        return cls(text, config)

    def save_pretrained(self, path: str | Path) -> None:
        self.text.save(Path(path) / "tokenizer.json")

    # ------------------------------------------------------------------ building
    def question_text(self, question: str, num_prompts: int, prompt_order: Sequence[int]) -> str:
        """Rewrite `<region>` placeholders (one per prompt, in order) into the chosen `<Promptk>` tokens; a
        question that names `<Promptk>` itself is left alone."""
        if num_prompts and question.count(REGION_PLACEHOLDER) not in (0, 1, num_prompts):
            raise PromptError(f"question has {question.count(REGION_PLACEHOLDER)} '<region>' marks for "
                              f"{num_prompts} region prompts")
        out = question
        if REGION_PLACEHOLDER in out:
            if out.count(REGION_PLACEHOLDER) == 1 and num_prompts > 1:
                out = out.replace(REGION_PLACEHOLDER, " and ".join(prompt_token(k) for k in prompt_order))
            else:
                for k in prompt_order:
                    out = out.replace(REGION_PLACEHOLDER, prompt_token(k), 1)
        elif num_prompts and not any(prompt_token(k) in out for k in prompt_order):
            out = " ".join(prompt_token(k) for k in prompt_order) + " " + out
        return out

    def build(self, frame: np.ndarray, question: str, answer: str | None = None,
              prompts: Sequence[VisualPrompt] = (), rng: random.Random | None = None,
              history: Sequence[tuple[str, str]] = ()) -> PixelSailInputs:
        """One image (uint8 [H, W, 3]) + question (+ the answer when training; None = ready to generate).

        `history` holds earlier (question, answer) turns of a chat about the same image; they follow the image
        block as ordinary ChatML turns (only the last answer is supervised)."""
        cfg = self.config
        H, W = frame.shape[:2]
        patches, grid = patchify_frames(frame[None], cfg.image_size, cfg.patch_size)
        gh, gw = grid
        masks = region_masks(prompts, H, W)
        if len(masks) > cfg.num_prompt_tokens:
            raise PromptError(f"{len(masks)} region prompts; this model has {cfg.num_prompt_tokens} prompt tokens")
        order = (rng.sample(range(cfg.num_prompt_tokens), len(masks)) if rng is not None
                 else list(range(len(masks))))
        prompt_ids = torch.full((gh * gw,), -1, dtype=torch.long)
        for k, m in zip(order, masks):
            prompt_ids[torch.from_numpy(patch_coverage(m, grid))] = k
        q = self.question_text(question, len(masks), order)

        head = self.text.encode(f"{IM_START}user\n") + [cfg.token_ids[VISION_START]]
        turns = "".join(f"{hq}{IM_END}\n{IM_START}assistant\n{ha}{IM_END}\n{IM_START}user\n" for hq, ha in history)
        tail = [cfg.token_ids[VISION_END]] + self.text.encode(f"\n{turns}{q}{IM_END}\n{IM_START}assistant\n")
        ans = [] if answer is None else self.text.encode(answer) + [self.im_end_id]
        ids = head + [self.patch_id] * (gh * gw) + tail + ans
        s = len(head)
        pos = torch.cat([
            text_positions(0, s),
            grid_positions(s, gh, gw),
            text_positions(s + max(gh, gw), len(tail) + len(ans)),
        ], dim=1)
        labels = torch.zeros(len(ids), dtype=torch.bool)
        if ans:
            labels[len(ids) - len(ans):] = True
        return PixelSailInputs(
            input_ids=torch.tensor(ids, dtype=torch.long), position_ids=pos, patches=patches[0], grid=grid,
            vision_span=(s, s + gh * gw), prompt_ids=prompt_ids, labels_mask=labels, frame_size=(H, W),
            prompt_token_ids=[cfg.token_ids[prompt_token(k)] for k in order],
        )

    def decode_answer(self, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
        ids = [i for i in ids if i != self.im_end_id]
        return self.text.decode_with_spans(ids, self.seg_id)
