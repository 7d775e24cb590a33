"""Teacher-forced answers: a query whose answer is fixed text run through the real model.

Random-weight (and lightly trained) models do not reliably answer with N `<|seg|>` tokens, so the multi-object and
video-length benchmarks fix the answer ("[0] <|seg|> [1] <|seg|> ...") and teacher-force it: the question and the
answer are prefilled by the real model in one pass, each `<|seg|>` gets its real hidden state, and everything after
(SAM2 encoding, tracking, propagation, result building) is the pipeline's own code. Decoding speed is measured
separately (`stages`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from pixelwise.models.unipixel import GenerationOutput


@contextmanager
def teacher_forced(pipe: Any, answer: str) -> Iterator[None]:
    """Within the block, `pipe.model.generate` returns `answer`, teacher-forced through the model (one prefill)."""

    model, proc = pipe.model, pipe.processor
    new = proc.encode(answer) + [proc.token_id("<|im_end|>")]

    def generate(inputs: Any, max_new_tokens: int = 512, stop_token_ids: Any = None, prefix: Any = None,
                 require_seg: bool = False) -> Any:  # the answer is given: nothing to force
        n = inputs.input_ids.numel()
        out = model(replace(inputs, input_ids=torch.cat([inputs.input_ids, torch.tensor(new[:-1])])))
        prompt_segs = [i for i in out.seg_positions if i + 1 < n]
        answer_segs = [i for i in out.seg_positions if i + 1 >= n]
        return GenerationOutput(
            prompt_length=n, generated_ids=torch.tensor(new), step_logits=out.logits[n - 1:],
            step_prenorm_hidden=out.prenorm_hidden[n - 1:],
            seg_states=out.prenorm_hidden[prompt_segs + answer_segs],
            seg_token_index=[-1] * len(prompt_segs) + [i + 1 - n for i in answer_segs], prefill=out,
        )

    had = "generate" in vars(model)
    old = vars(model).get("generate")
    model.generate = generate
    try:
        yield
    finally:
        if had:
            model.generate = old
        else:
            del model.generate


def objects_answer(n: int) -> str:
    """`[0] <|seg|> [1] <|seg|> ...` (n objects, the official multi-object format)."""
    return " ".join(f"[{k}] <|seg|>" for k in range(n))
