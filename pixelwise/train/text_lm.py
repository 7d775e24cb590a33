"""Text-only language-model training of a from-scratch UniPixel's LLM on the conversations it will see.

An official UniPixel starts from a pre-trained Qwen2.5 whose attention already reads the question; a tiny LLM trained
from random initialisation on the multimodal recipe alone settles into a bigram solution (each answer token predicted
from the token before it, the question and the frames ignored: see docs/models/unipixel-tiny.md), because a
conversation supervises only its ~20 answer tokens per forward of ~100-200 positions. This objective trains the LLM on
the rendered conversations *without* the frames, with the next-token loss on every token (question and answer), many
sequences per step: cheap tokens that teach it to read and copy what the question says.

Items come from the same sources as the conversation objective (`MixedSource`); conversations that need visual
inputs to be well-formed (`<|ref|>` / `<|mem|>` prompts) are rendered with their text only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pixelwise.modules.qwen_vl import render_chat


@dataclass
class TextItem:
    ids: torch.Tensor  # int64 [L]
    data_type: str = "text_lm"


class TextLMDataset:
    """One rendered conversation (ChatML, no visual item) per source item; item randomness = f(seed, epoch, index)."""

    def __init__(self, source, processor, seed: int = 0, max_tokens: int = 256):
        self.source = source
        self.processor = processor
        self.seed = seed
        self.epoch = 0
        self.max_tokens = max_tokens

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def group_keys(self) -> list[str]:
        return ["text"] * len(self)

    def __getitem__(self, index: int) -> TextItem | None:
        rng = random.Random(hash((self.seed, self.epoch, int(index), 3)) & 0xFFFFFFFF)  # ints only: str hashes vary per process
        _, convs, _ = self.source.conversations(int(index), rng)
        if not convs:
            return None
        conv = convs[rng.randrange(len(convs))]
        messages = []
        for q, a in conv.turns:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        ids = self.processor.encode(render_chat(messages, add_generation_prompt=False))[: self.max_tokens]
        return TextItem(torch.tensor(ids, dtype=torch.int64))


def collate_text(batch: list[TextItem | None]) -> list[TextItem]:
    return [b for b in batch if b is not None]


class TextLMModule(torch.nn.Module):
    """The LLM of a UniPixel model on padded text batches; same call signature as `UniPixelTrainModule`."""

    def __init__(self, model: torch.nn.Module, pad_id: int = 0):
        super().__init__()
        self.model = model
        self.pad_id = pad_id

    def forward(self, items: list[TextItem], keep_masks: bool = False):
        lm = self.model.language_model
        dev = self.model.lm_head.weight.device
        if not items:
            zero = sum(p.sum() * 0.0 for p in self.model.parameters() if p.requires_grad)
            return zero, {"_counts": {}}, []
        n = max(it.ids.numel() for it in items)
        ids = torch.full((len(items), n), self.pad_id, dtype=torch.int64)
        mask = torch.zeros(len(items), n, dtype=torch.bool)
        for k, it in enumerate(items):
            ids[k, : it.ids.numel()] = it.ids
            mask[k, : it.ids.numel()] = True
        ids, mask = ids.to(dev), mask.to(dev)
        pos = torch.arange(n, device=dev).expand(3, len(items), n)  # text only: the same id on the three MRoPE axes
        out = lm(inputs_embeds=lm.embed_tokens(ids), position_ids=pos, attention_mask=mask.long(), use_cache=False)
        logits = self.model.lm_head(out.last_hidden_state)
        target_ok = mask[:, 1:]
        loss = F.cross_entropy(logits[:, :-1][target_ok].float(), ids[:, 1:][target_ok])
        metrics = {"loss": float(loss.detach()), "loss_lm": float(loss.detach())}
        metrics["_counts"] = {k: len(items) for k in metrics}
        return loss, metrics, [{} for _ in items]
