"""`region_mentions` and `option_links` (tiny-only): a region's embedding joins the text where the text names it by
its number; an answer option's letter carries the option's words."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.train.test_grounding import DEFAULT, pw_images, without  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def mentioned(tmp_path_factory):
    """The default model with `region_mentions: true` as a recipe writes it, and the same weights without it."""
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D

    torch.set_num_threads(1)
    cfg = load_config(None, [f"model.init={DEFAULT}", "model.config_overrides={region_mentions: true}"])
    model, processor, _ = build_model(cfg, tmp_path_factory.mktemp("run"), D.DistInfo())
    return model.eval(), processor, without(model, "region_mentions")


def _dense_example(processor, root):
    from pixelwise.train.unipixel_data import DenseGroundingSource, UniPixelTrainDataset

    data = UniPixelTrainDataset(DenseGroundingSource(root, seg_rate=0.0, mem_rate=1.0), processor, seed=0,
                                video_frames=(1,), visual_words=True)
    return data[0]  # "[0] is a small red circle, [1] is ..." with every object of the scene as a region


def test_mention_tokens_read_the_region_numbers(mentioned):
    from pixelwise.core.errors import ConfigError
    from pixelwise.models.unipixel import UniPixelConfig

    model, processor, _ = mentioned
    tok = processor.tokenizer
    table = model.config.region_mentions
    assert tok.token_to_id("[") in table["open"] and [tok.token_to_id("7"), 7] in table["digits"]
    seq = tok.encode("What color is [1]? [0] is red, [12]: <|mem|> (3)", add_special_tokens=False).ids
    found = [model.region_number(seq, q) for q in range(len(seq))]
    assert [k for k in found if k is not None] == [1, 0, 12]  # "(3)" is not a region
    raw = model.config.to_dict()
    for bad in ({"open": [1]}, {"open": [10 ** 9], "digits": []}, {"open": [1], "digits": [[5]]}, True):
        with pytest.raises(ConfigError, match="region_mentions"):
            UniPixelConfig.from_dict({**raw, "region_mentions": bad})


def test_region_mentions_change_the_text_from_the_first_mention_and_train(mentioned, pw_images):  # noqa: F811
    from pixelwise.train.unipixel_loss import LossConfig, example_loss

    model, processor, base = mentioned
    ex = _dense_example(processor, pw_images)
    with torch.no_grad():
        before, after = base(ex.inputs), model(ex.inputs)
    seq = ex.inputs.input_ids.reshape(-1).tolist()
    first = next(q for q in range(len(seq)) if model.region_number(seq, q) is not None)  # "[0]: <|mem|>" of the prefix
    assert torch.allclose(before.logits[:first], after.logits[:first], atol=1e-5)
    assert not torch.allclose(before.logits[first:], after.logits[first:], atol=1e-3)
    n_regions = int(ex.inputs.refer_mask.shape[1])
    assert sorted(after.mentions) == list(range(n_regions))
    assert torch.allclose(after.mentions[0], after.mem_embeds[0])  # an image region has one <|mem|> slot

    total, _, _ = example_loss(model.train(), ex, LossConfig(seg_enabled=False))
    total.backward()
    assert model.mention_gate.grad.abs().sum() > 0  # the answer's "[k] is ..." reaches the gate
    model.zero_grad()
    model.eval()


def test_decoding_adds_the_region_where_the_answer_writes_its_number(mentioned, pw_images):  # noqa: F811
    """Step by step through an answer that names regions, the decoding path (`mention_step`) gives the logits of
    the teacher-forced prefill over the whole text: what a trained model reads while generating is what it trained
    on."""
    from dataclasses import replace

    from pixelwise.modules.mrope import decode_position_ids

    model, processor, _ = mentioned
    ex = _dense_example(processor, pw_images)
    ids = ex.inputs.input_ids.reshape(-1)
    start = int(ex.labels_mask.reshape(-1).nonzero()[0])  # the answer's first token
    with torch.no_grad():
        gate = model.mention_gate.clone()
        model.mention_gate.normal_(0, 1.0)
        full = model(ex.inputs)
        pre = model(replace(ex.inputs, input_ids=ids[:start].clone()))
        cache, prev, steps = pre.past_key_values, int(ids[start - 1]), [pre.logits[-1]]
        for j in range(start, len(ids) - 1):
            tok = int(ids[j])
            emb = model.mention_step(model.language_model.embed_tokens(ids[j].reshape(1, 1)), prev, tok, pre.mentions)
            logits, _, cache = model._run_llm(emb, decode_position_ids(j, pre.rope_delta), cache)
            steps.append(logits[0, -1])
            prev = tok
        model.mention_gate.copy_(gate)
    assert any(model.region_number(ids.tolist(), q) is not None for q in range(start, len(ids)))
    assert torch.allclose(torch.stack(steps), full.logits[start - 1: len(ids) - 1], atol=1e-4)


def test_option_letters_carry_their_words_in_user_turns_only(pw_images, tmp_path):  # noqa: F811
    from pixelwise.models.unipixel import UniPixelForConditionalGeneration
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D
    from pixelwise.train.unipixel_data import RegionChoiceSource, UniPixelTrainDataset
    from pixelwise.train.unipixel_loss import LossConfig, example_loss

    torch.set_num_threads(1)
    cfg = load_config(None, [f"model.init={DEFAULT}", "model.config_overrides={option_links: true}"])
    model, processor, _ = build_model(cfg, tmp_path / "run", D.DistInfo())
    base = without(model, "option_links", "option_pointer")
    model = without(model, "option_pointer")  # the LM's own letters: the pointer would override them
    tok = processor.tokenizer
    data = UniPixelTrainDataset(RegionChoiceSource(pw_images, turns=2), processor, seed=0, video_frames=(1,))
    ex = data[0]
    seq = ex.inputs.input_ids.reshape(-1).tolist()
    links = model.option_spans(seq)
    assert len(links) == 8  # four options in each of the two questions; the answers' "(B) red" are not linked
    for q, span in links:
        assert tok.id_to_token(seq[q]) in "ABCD" and not ex.labels_mask.reshape(-1)[q]
        assert 1 <= len(span) <= 4 and span[0] == q + 2 and "\u010a" not in tok.decode([seq[r] for r in span])
    words = [tok.decode([seq[r] for r in span]).strip() for _, span in links[:4]]
    question = processor.decode(seq)
    assert all(f"({c}) {w}" in question for c, w in zip("ABCD", words))
    with torch.no_grad():
        before, after = base(ex.inputs), model.eval()(ex.inputs)
    first = links[0][0]
    assert torch.allclose(before.logits[:first], after.logits[:first], atol=1e-5)
    assert not torch.allclose(before.logits[first:], after.logits[first:], atol=1e-3)
    total, _, _ = example_loss(model.train(), ex, LossConfig(seg_enabled=False))
    total.backward()
    assert model.option_gate.grad.abs().sum() > 0
    assert model.option_spans(tok.encode("What is (A) red", add_special_tokens=False).ids)  # a bare prompt is a user's


def test_option_pointer_learns_the_letter_and_answers_with_it(pw_images, tmp_path):  # noqa: F811
    """The pointer's loss covers each answer letter of an option conversation; a few steps on one conversation teach
    it the letters (the LM alone did not learn them, card: session 8); generation writes the pointer's letter."""
    import pixelwise
    from pixelwise.core.errors import ConfigError
    from pixelwise.core.prompts import MaskPrompt
    from pixelwise.models.unipixel import UniPixelConfig
    from pixelwise.recipes.train_unipixel import build_model, load_config
    from pixelwise.train import distributed as D
    from pixelwise.train.unipixel_data import RegionChoiceSource, UniPixelTrainDataset
    from pixelwise.train.unipixel_loss import LossConfig, example_loss, option_loss

    torch.set_num_threads(1)
    overrides = "model.config_overrides={option_links: true, option_pointer: 32}"
    cfg = load_config(None, [f"model.init={DEFAULT}", overrides])
    model, processor, _ = build_model(cfg, tmp_path / "run", D.DistInfo())
    with pytest.raises(ConfigError, match="option_pointer needs option_links"):
        UniPixelConfig.from_dict({**{k: v for k, v in model.config.to_dict().items() if k != "option_links"}})
    source = RegionChoiceSource(pw_images, turns=3)
    ex = UniPixelTrainDataset(source, processor, seed=0, video_frames=(1,))[0]
    seq = ex.inputs.input_ids.reshape(-1).tolist()
    turns = model.option_turns(seq)
    assert len(turns) == 3 and all(len(p) == 4 and len(set(ls)) == 4 for p, ls, _ in turns.values())

    for p in model.parameters():
        p.requires_grad_(False)
    head = [*model.option_query.parameters(), *model.option_key.parameters()]
    for layer in (*model.option_query, *model.option_key):  # from scratch (the default model's pointer is trained)
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    for p in head:
        p.requires_grad_(True)
    opt = torch.optim.Adam(head, lr=1e-2)
    first = None
    for _ in range(30):
        total, metrics, _ = example_loss(model.train(), ex, LossConfig(seg_enabled=False, lm_weight=0.0))
        first = metrics["loss_option"] if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(ex.inputs)
        assert float(option_loss(model, out, ex.inputs.input_ids.reshape(-1), ex.labels_mask)) < 0.1 < first

    # generation: the letter after the prime is the pointer's choice among the question's options
    frames, (conv,), _ = source.conversations(0, __import__("random").Random(0))
    question = conv.turns[0][0].split("\nOptions:\n")[0]
    options = [line[4:] for line in conv.turns[0][0].split("\nOptions:\n")[1].split("\n") if line.startswith("(")]
    assert len(options) == 4
    region = int(question.split("[")[1].split("]")[0])
    pipe = pixelwise.load(DEFAULT)
    pipe.model = model
    calls = []
    pointed = model.pointed_letter
    model.pointed_letter = lambda *a: calls.append(pointed(*a)) or calls[-1]
    r = pipe.ask(frames[:1], question, regions={region: MaskPrompt(np.asarray(conv.mem_masks[region][0].mask), 0)},
                 options=options, max_new_tokens=4)
    letter = processor.tokenizer.id_to_token(next(c for c in calls if c is not None))
    assert r.answer.startswith(letter) and letter in "ABCD"
