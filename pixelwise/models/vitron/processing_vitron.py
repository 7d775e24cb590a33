"""VITRON inputs: frames -> raw patches for the front-end encoder; a ChatML sequence with the (temporally pooled)
image block and `<region>` slots; generated ids -> text; and the grammar that keeps generated commands parseable.

Sequence (LLaVA-style, causal):

    <|im_start|>user\\n <|vision_start|> <|image_pad|> x (h/k * w/k) <|vision_end|> \\n QUESTION <|im_end|>\\n
    <|im_start|>assistant\\n ANSWER <|im_end|>

`<region>` in the question marks where each visual prompt's sketch embedding goes (prompt i -> i-th `<region>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pixelwise.core.errors import CheckpointError, PromptError
from pixelwise.core.masks import mask_to_box
from pixelwise.core.prompts import VisualPrompt
from pixelwise.models.vitron.configuration_vitron import (
    IM_END,
    IM_START,
    INSTR_CLOSE,
    INSTR_OPEN,
    MODULE_CLOSE,
    MODULE_OPEN,
    MODULES,
    REGION_TOKEN,
    SIGNAL_TOKEN,
    VISION_END,
    VISION_PAD,
    VISION_START,
    VitronConfig,
)
from pixelwise.models.vitron.instruction import DIRECTIONS, OP_MODULE
from pixelwise.modules.chat_text import ChatText
from pixelwise.modules.patches import patchify_frames, region_masks
from pixelwise.modules.transformer import grid_positions, text_positions

# words an instruction may use besides the ones it copies from the request: the op, the separators and the move
# directions ("Shift it to the top" -> "up"); targets, colors and places must come from the request itself
_INSTRUCTION_WORDS = [*OP_MODULE, *DIRECTIONS, ":", "|"]


@dataclass
class VitronInputs:
    input_ids: torch.Tensor  # long [L]
    position_ids: torch.Tensor  # long [3, L]
    patches: torch.Tensor  # float [T, h*w, 3*P*P]
    grid: tuple[int, int]  # encoder patch grid
    llm_grid: tuple[int, int]  # pooled grid the LLM sees
    vision_span: tuple[int, int]
    labels_mask: torch.Tensor  # bool [L]
    frame_size: tuple[int, int]
    region_masks: list[np.ndarray] = field(default_factory=list)  # bool [H, W] per prompt
    region_frames: list[int] = field(default_factory=list)
    region_boxes: torch.Tensor | None = None  # float [K, 4] normalised x1, y1, x2, y2
    question_ids: list[int] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.patches.shape[0])


class VitronProcessor:
    def __init__(self, text: ChatText, config: VitronConfig):
        self.text = text
        self.config = config
        ids = config.token_ids
        self.im_end_id, self.sig_id, self.region_id = ids[IM_END], ids[SIGNAL_TOKEN], ids[REGION_TOKEN]
        self.module_open, self.module_close = ids[MODULE_OPEN], ids[MODULE_CLOSE]
        self.instr_open, self.instr_close = ids[INSTR_OPEN], ids[INSTR_CLOSE]
        self._module_ids = sorted({i for m in MODULES for i in self.text.encode(m)})
        self._instr_ids = sorted({i for w in _INSTRUCTION_WORDS for s in (w, " " + w) for i in self.text.encode(s)})

    @classmethod
    def from_pretrained(cls, path: str | Path, config: VitronConfig | None = None) -> VitronProcessor:
        config = config or VitronConfig.from_pretrained(path)
        text = ChatText.from_file(Path(path) / "tokenizer.json")
        for tok, i in config.token_ids.items():
            if text.tok.token_to_id(tok) != i:
                raise CheckpointError(f"{path}: tokenizer id of {tok!r} is {text.tok.token_to_id(tok)}, config says {i}")
        return cls(text, config)

    def save_pretrained(self, path: str | Path) -> None:
        self.text.save(Path(path) / "tokenizer.json")

    def build(self, frames: np.ndarray, question: str, answer: str | None = None,
              prompts: Sequence[VisualPrompt] = (), history: Sequence[tuple[str, str]] = ()) -> VitronInputs:
        cfg = self.config
        if frames.ndim == 3:
            frames = frames[None]
        T, H, W = frames.shape[:3]
        patches, grid = patchify_frames(frames, cfg.image_size, cfg.patch_size)
        k = cfg.llm_pool
        if grid[0] % k or grid[1] % k:
            raise PromptError(f"a {W}x{H} frame gives a {grid[1]}x{grid[0]} patch grid that llm_pool {k} does not "
                              "divide; this model expects square frames")
        lg = (grid[0] // k, grid[1] // k)
        masks = region_masks(prompts, H, W, T)
        q = question
        if masks and q.count(REGION_TOKEN) == 0:
            q = " ".join([REGION_TOKEN] * len(masks)) + " " + q
        if q.count(REGION_TOKEN) != len(masks):
            raise PromptError(f"question has {q.count(REGION_TOKEN)} '<region>' marks for {len(masks)} region prompts")
        head = self.text.encode(f"{IM_START}user\n") + [cfg.token_ids[VISION_START]]
        turns = "".join(f"{hq}{IM_END}\n{IM_START}assistant\n{ha}{IM_END}\n{IM_START}user\n" for hq, ha in history)
        q_ids = self.text.encode(f"\n{turns}{q}")
        tail = [cfg.token_ids[VISION_END]] + q_ids + self.text.encode(f"{IM_END}\n{IM_START}assistant\n")
        ans = [] if answer is None else self.text.encode(answer) + [self.im_end_id]
        n_vis = lg[0] * lg[1]
        ids = head + [cfg.token_ids[VISION_PAD]] * n_vis + tail + ans
        s = len(head)
        pos = torch.cat([text_positions(0, s), grid_positions(s, *lg),
                         text_positions(s + max(lg), len(tail) + len(ans))], dim=1)
        labels = torch.zeros(len(ids), dtype=torch.bool)
        if ans:
            labels[len(ids) - len(ans):] = True
        boxes = []
        for m in masks:
            b = mask_to_box(m)
            boxes.append([b[0] / W, b[1] / H, b[2] / W, b[3] / H] if b else [0.0, 0.0, 1.0, 1.0])
        return VitronInputs(
            input_ids=torch.tensor(ids, dtype=torch.long), position_ids=pos, patches=patches, grid=grid,
            llm_grid=lg, vision_span=(s, s + n_vis), labels_mask=labels, frame_size=(H, W), region_masks=masks,
            region_frames=[int(getattr(p, "frame", 0)) for p in prompts],
            region_boxes=torch.tensor(boxes, dtype=torch.float32) if boxes else None, question_ids=q_ids,
        )

    # ------------------------------------------------------------------ decoding
    def decode_answer(self, ids: Sequence[int]) -> str:
        return self.text.decode([i for i in ids if i != self.im_end_id])

    def allowed_next(self, generated: Sequence[int], question_ids: Sequence[int]) -> list[int] | None:
        """Grammar-constrained decoding of the command part (None = unconstrained).

        Free text may precede `<module>`; inside it only module names; then `<instruction>`; inside the
        instruction only tokens copied from the request plus op/argument words; then `[SIG]` or the end.
        """
        last_tag = None
        for i in reversed(generated):
            if i in (self.module_open, self.module_close, self.instr_open, self.instr_close, self.sig_id):
                last_tag = i
                break
        if last_tag is None:
            return None
        if last_tag == self.module_open:
            return [*self._module_ids, self.module_close]
        if last_tag == self.module_close:
            return [self.instr_open]
        if last_tag == self.instr_open:
            return sorted(set(question_ids) | set(self._instr_ids) | {self.instr_close})
        if last_tag == self.instr_close:
            return [self.sig_id, self.im_end_id]
        return [self.im_end_id]
