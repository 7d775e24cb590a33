"""Text + frame processing shared by the families built on `pixelwise.modules.vlm.QwenVL` (PixelLM, UFO).

It reuses UniPixel's Qwen2.5-VL pieces (smart-resize, patchify, ChatML rendering, MRoPE positions) instead of
copying them, and adds what a trainable decoder-light family needs on top: the supervised-token mask of a
teacher-forced answer, padded batches with explicit boolean attention masks, and a fixed per-checkpoint frame
budget (a tiny model is trained at one resolution, so a query must be processed at that resolution too).

A family processor subclasses `VLProcessor` and only says how its special tokens are written in answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.core.errors import CheckpointError, MediaError, PromptError
from pixelwise.core.io import atomic_write_text, check_regular_file, read_json
from pixelwise.modules.mrope import mrope_position_ids
from pixelwise.modules.qwen_vl import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    VIDEO_PAD,
    patchify,
    render_chat,
    resize_for_llm,
    video_message,
)
from pixelwise.modules.vlm import causal_mask

IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"


MAX_TOKENIZER_BYTES = 256 << 20


def load_tokenizer(file: Path):
    """A `tokenizers.Tokenizer` from a tokenizer.json that is a regular file of a sane size; any failure (the
    library raises a bare `Exception` on a malformed file) is a `CheckpointError` naming the file."""
    from tokenizers import Tokenizer

    check_regular_file(file, CheckpointError, MAX_TOKENIZER_BYTES)
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # noqa: BLE001  (tokenizers raises a plain Exception on a bad file)
        raise CheckpointError(f"{file}: not a readable tokenizer ({str(e)[:200]})") from None


@dataclass
class Encoded:
    """One query (or one teacher-forced training sample) ready for the model."""

    input_ids: torch.Tensor  # int64 [L]
    supervised: torch.Tensor  # bool [L]: tokens the LM loss predicts (answer + its <|im_end|>)
    position_ids: torch.Tensor  # int64 [3, L]
    pixel_values: torch.Tensor  # float32 [N, 3*tp*p*p]
    grid_thw: torch.Tensor  # int64 [1, 3] (patch grid)
    image_span: tuple[int, int]  # [start, end) of the <|video_pad|> tokens
    frame_size: tuple[int, int]  # original (H, W)
    prompt_length: int  # tokens before the answer
    # Packed sequences (UFO's parallel decoding): an explicit mask and the local-token bookkeeping.
    attention: torch.Tensor | None = None  # bool [L, L] replacing the causal mask
    local_positions: list[int] | None = None  # position of each sub-sequence's local token
    local_points: torch.Tensor | None = None  # [M, 2] (x, y) in [0, 1] of each local token's grid point
    subsequences: list[tuple[int, int]] | None = None  # [start, end) of each sub-sequence (local token first)

    @property
    def merged_grid(self) -> tuple[int, int]:
        """(h, w) of the merged visual-token grid of the first frame pair."""
        _, gh, gw = (int(v) for v in self.grid_thw[0])
        return gh // 2, gw // 2


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L] (padded with pad_id)
    supervised: torch.Tensor  # [B, L]
    position_ids: torch.Tensor  # [3, B, L]
    attention_mask: torch.Tensor  # bool [B, 1, L, L]
    pixel_values: torch.Tensor  # [sum N, C]
    grid_thw: torch.Tensor  # [B, 3]
    lengths: list[int]


class VLProcessor:
    """Tokenizer (a `tokenizers.Tokenizer`) + frame budget + the Qwen2.5-VL token ids the model needs."""

    special_tokens: tuple[str, ...] = ()  # family tokens that must exist in the tokenizer

    def __init__(self, tokenizer, frame_pixels: int, patch_size: int, merge_size: int = 2,
                 temporal_patch_size: int = 2, image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
                 image_std: Sequence[float] = OPENAI_CLIP_STD, tokens_per_second: int = 2):
        self.tokenizer = tokenizer
        self.frame_pixels = int(frame_pixels)
        self.patch_size = int(patch_size)
        self.merge_size = int(merge_size)
        self.temporal_patch_size = int(temporal_patch_size)
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.tokens_per_second = tokens_per_second
        for tok in (VIDEO_PAD, VISION_START, IM_END, *self.special_tokens):
            if tokenizer.token_to_id(tok) is None:
                raise CheckpointError(f"tokenizer has no {tok} token")
        self.video_id = self.token_id(VIDEO_PAD)
        self.vision_start_id = self.token_id(VISION_START)
        self.im_end_id = self.token_id(IM_END)
        self.pad_id = self.token_id("<|endoftext|>") if tokenizer.token_to_id("<|endoftext|>") is not None else 0

    # ------------------------------------------------------------------ files

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any):
        path = Path(path)
        tok_file, pre_file = path / "tokenizer.json", path / "preprocessor_config.json"
        for f in (tok_file, pre_file):
            if not f.exists():
                raise CheckpointError(f"{path}: no {f.name}")
        pre = read_json(pre_file, CheckpointError)
        if not isinstance(pre, dict):
            raise CheckpointError(f"{pre_file}: must be a JSON object, got {type(pre).__name__}")
        tokenizer = load_tokenizer(tok_file)
        try:
            sizes = {"frame_pixels": int(pre["frame_pixels"]), "patch_size": int(pre["patch_size"]),
                     "merge_size": int(pre.get("merge_size", 2)),
                     "temporal_patch_size": int(pre.get("temporal_patch_size", 2))}
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise CheckpointError(f"{pre_file}: needs integer frame_pixels and patch_size ({type(e).__name__}: {e})"
                                  ) from None
        return cls(tokenizer, **sizes, image_mean=pre.get("image_mean", OPENAI_CLIP_MEAN),
                   image_std=pre.get("image_std", OPENAI_CLIP_STD), **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        atomic_write_text(path / "tokenizer.json", self.tokenizer.to_str())
        pre = {"frame_pixels": self.frame_pixels, "patch_size": self.patch_size, "merge_size": self.merge_size,
               "temporal_patch_size": self.temporal_patch_size, "image_mean": list(self.image_mean),
               "image_std": list(self.image_std)}
        atomic_write_text(path / "preprocessor_config.json", json.dumps(pre, indent=2) + "\n")

    # ------------------------------------------------------------------ tokens

    def token_id(self, token: str) -> int:
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise CheckpointError(f"tokenizer has no {token} token")
        return int(tid)

    def encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def format_answer(self, answer: str) -> str:
        """Dataset answer (PixelWorld writes one `[SEG]` per target) -> the family's answer text."""
        return answer

    # ------------------------------------------------------------------ frames and chat

    def frames(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 [T, H, W, 3] -> (pixel values, grid_thw [1, 3]) at this checkpoint's fixed frame budget."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise MediaError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
        llm = resize_for_llm(frames, self.frame_pixels, self.frame_pixels, self.temporal_patch_size,
                             factor=self.patch_size * self.merge_size)
        return patchify(llm, self.patch_size, self.merge_size, self.temporal_patch_size, self.image_mean,
                        self.image_std)

    def positions(self, ids: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        pos, _ = mrope_position_ids(ids, grid_thw, torch.tensor([1.0]), self.video_id, self.vision_start_id,
                                    self.merge_size, self.tokens_per_second)
        return pos

    def encode(self, frames: np.ndarray, question: str, answer: str | None = None) -> Encoded:
        """Frames + question (+ teacher-forced answer in the family's format) -> `Encoded`.

        Without an answer the sequence ends with the generation prompt; with one, the answer and `<|im_end|>` are
        appended and marked `supervised`.
        """
        if not question.strip():
            raise PromptError("the question is empty")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        pv, thw = self.frames(frames)
        chat = render_chat([video_message(question, int(frames.shape[0]))], add_generation_prompt=True)
        n_vis = int(thw.prod()) // self.merge_size**2
        before, after = chat.split(VIDEO_PAD)
        pre_ids = self.encode_text(before)
        ids = pre_ids + [self.video_id] * n_vis + self.encode_text(after)
        prompt_length = len(ids)
        if answer is not None:
            ids = ids + self.encode_text(answer) + [self.im_end_id]
        input_ids = torch.tensor(ids, dtype=torch.int64)
        supervised = torch.zeros(len(ids), dtype=torch.bool)
        supervised[prompt_length:] = True
        return Encoded(input_ids=input_ids, supervised=supervised, position_ids=self.positions(input_ids, thw),
                       pixel_values=pv, grid_thw=thw, image_span=(len(pre_ids), len(pre_ids) + n_vis),
                       frame_size=(int(frames.shape[1]), int(frames.shape[2])), prompt_length=prompt_length)

    def extend(self, enc: Encoded, new_ids: Sequence[int]) -> Encoded:
        """`enc` with generated tokens appended (positions continue the text axis)."""
        if not new_ids:
            return enc
        ids = torch.cat([enc.input_ids, torch.tensor(list(new_ids), dtype=torch.int64)])
        start = int(enc.position_ids[:, -1].max()) + 1
        extra = torch.arange(start, start + len(new_ids), dtype=torch.int64).view(1, -1).expand(3, -1)
        return Encoded(ids, torch.cat([enc.supervised, torch.zeros(len(new_ids), dtype=torch.bool)]),
                       torch.cat([enc.position_ids, extra], 1), enc.pixel_values, enc.grid_thw, enc.image_span,
                       enc.frame_size, enc.prompt_length)

    def collate(self, items: Sequence[Encoded], bidirectional_image: bool = False) -> Batch:
        """Right-padded batch; causal masks (+ full attention among each item's image tokens when asked)."""
        length = max(len(e.input_ids) for e in items)
        b = len(items)
        ids = torch.full((b, length), self.pad_id, dtype=torch.int64)
        sup = torch.zeros(b, length, dtype=torch.bool)
        pos = torch.zeros(3, b, length, dtype=torch.int64)
        mask = torch.zeros(b, 1, length, length, dtype=torch.bool)
        for i, e in enumerate(items):
            n = len(e.input_ids)
            ids[i, :n], sup[i, :n], pos[:, i, :n] = e.input_ids, e.supervised, e.position_ids
            spans = [e.image_span] if bidirectional_image else []
            mask[i, 0] = causal_mask(length, n, spans)
            if e.attention is not None:
                mask[i, 0, :n, :n] = e.attention
        return Batch(ids, sup, pos, mask, torch.cat([e.pixel_values for e in items]),
                     torch.cat([e.grid_thw for e in items]), [len(e.input_ids) for e in items])
