"""Fixtures: the conformance checkpoint (official layout, tiny random weights) loaded as a pipeline, and a way to
script the answer its LLM gives (random weights never say anything useful)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "conformance" / "unipixel" / "checkpoint"


@pytest.fixture(scope="session")
def pipe():
    import pixelwise

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield pixelwise.load(CHECKPOINT, device="cpu")
    torch.set_num_threads(old)


@pytest.fixture()
def scripted(pipe, monkeypatch):
    """`scripted(answer, ...)`: the model's next answers are these texts, teacher-forced through the real model, so
    each `<|seg|>` gets a real hidden state (one answer per generate call, the last one repeats)."""
    from pixelwise.models.unipixel import GenerationOutput

    model, proc = pipe.model, pipe.processor
    calls: list = []

    def install(*answers: str):
        def generate(inputs, max_new_tokens=512, stop_token_ids=None, prefix=None, require_seg=False):
            calls.append(inputs)
            answer = answers[min(len(calls), len(answers)) - 1]
            new = proc.encode(answer) + [proc.token_id("<|im_end|>")]
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

        monkeypatch.setattr(model, "generate", generate)
        return calls

    return install
