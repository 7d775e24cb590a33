"""Conversation templates: one training sample (media + question + answer + targets + visual prompts) -> a UniPixel
conversation, for every task family, with the official wording (pixelwise/models/unipixel/README.md).

A `Conversation` is model-agnostic text plus the objects it refers to; `pixelwise.train.unipixel_data` turns it into
tokens, labels (loss on assistant turns only) and SAM2 targets.

| family (`data_type`) | user turn | assistant turn |
|---|---|---|
| `seg_image` / `seg_video` | "Please segment the {q} in this image." (+ paraphrases, or the dataset's own question) | "Sure, it is <\\|seg\\|>." or the dataset's answer with `[SEG]` -> `<\\|seg\\|>` |
| `ref_point` / `ref_box` | question with the region written `[0] <\\|ref\\|>` | text answer |
| `region_image` / `region_video` | `<\\|mem\\|>` prefix ("Here is an image/video ... highlighted regions") + question with `[0]` | text answer; multiple choice: "The best option is (X) ..." |
| `mem_point` / `mem_box` (PixelQA round 1) | question + options with `[0] <\\|ref\\|>` + "Please localize the relevant objects with IDs." | "[0] <\\|seg\\|>" |
| `text` | question | answer |
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelwise.core.prompts import Box, MaskPrompt, Point

SEG, REF, MEM = "<|seg|>", "<|ref|>", "<|mem|>"

# Official segmentation question templates (the first is the evaluation one), image/video variants.
SEG_QUERY_TEMPLATES = [
    "Please segment the {q} in this {media}.",
    "Can you segment the {q} in this {media}?",
    "What is the {q} in this {media}? Please respond with the segmentation mask.",
    "Where is the {q} in this {media}? Please respond with the segmentation mask.",
    "Please highlight the {q} in this {media}.",
]
SEG_SENTENCE_TEMPLATES = [
    "{q} Please provide the segmentation mask.",
    "{q} Please respond with the segmentation mask.",
    "{q} Please output the segmentation mask.",
]
SEG_RESPONSES = [
    "The target is <|seg|>.",
    "The segmentation result is <|seg|>.",
    "Sure, the segmentation mask is <|seg|>.",
    "Sure, it is <|seg|>.",
    "<|seg|>.",
]
MEM_ROUND1_TEMPLATES = [
    "{q} Please localize the relevant objects with IDs.",
    "{q} Please segment the relevant objects with IDs.",
]
MC_PRIME = "The best option is ("


@dataclass
class Conversation:
    """One training conversation about one image or clip (frames are indices into the sample's frames)."""

    data_type: str
    turns: list[tuple[str, str]]  # (user text, assistant text); the visual item precedes the first user text
    seg_masks: np.ndarray | None = None  # bool [O, T, H, W], one per <|seg|> of the assistant turns, in order
    ref_prompts: list[Point | Box] = field(default_factory=list)  # one per <|ref|>, in text order
    mem_masks: list[list[MaskPrompt]] = field(default_factory=list)  # per object, masks for the <|mem|> prefix
    frames: list[int] | None = None  # frames of the sample to use (None: all)


def strip_article(q: str) -> str:
    q = q.strip().rstrip(".")
    q = re.sub(r"^(the|a|an)\s+", "", q, flags=re.IGNORECASE)
    return q[:1].lower() + q[1:] if q else q


def seg_question(phrase: str, is_image: bool, rng: random.Random, official_only: bool = False) -> str:
    media = "image" if is_image else "video"
    if phrase.endswith("?") or (phrase[:1].isupper() and " " in phrase and not official_only):
        return rng.choice(SEG_SENTENCE_TEMPLATES).format(q=phrase)
    q = strip_article(phrase)
    if official_only:
        return SEG_QUERY_TEMPLATES[0].format(q=q, media=media)
    return rng.choice(SEG_QUERY_TEMPLATES).format(q=q, media=media)


def native_answer(answer: str) -> str:
    return answer.replace("[SEG]", SEG)


def _mc_answer(options: list[str], correct: str) -> str:
    for o in options:
        if o.startswith(f"({correct})"):
            return f"{MC_PRIME}{o[1:]}."
    return f"{MC_PRIME}{correct})."


def _strip_instruction(q: str) -> str:
    """The question without PixelWorld's trailing answer instruction (options kept)."""
    for tail in ("Answer with the option's letter from the given choices directly.",
                 "Segment the object through the video and answer with the option's letter."):
        q = q.replace(tail, "")
    return q.strip()


def _base_question(sample: dict[str, Any]) -> str:
    """The question without PixelWorld's inline options and answer instruction (as the VideoRefer export writes it)."""
    return _strip_instruction(sample["question"].split(" (A) ")[0])


def mcq_text(question: str, options: list[str]) -> str:
    """The official multiple-choice prompt (the pipeline's `mcq_question`)."""
    return question.strip() + "\nOptions:\n" + "\n".join(options) + "\nPlease only give the best option."


def localize_text(question_with_refs: str, options: list[str] | None) -> str:
    """PixelQA round 1 (the pipeline's `localize_question`): question (+ options) then the localization request."""
    q = question_with_refs.strip() + ("\nOptions:\n" + "\n".join(options) if options else "")
    q = q.rstrip()
    return f"{q}{'' if q.endswith(('.', '?', '!')) else '.'} {MEM_ROUND1_TEMPLATES[0].split('} ')[1]}"


def official_seg_question(text: str, is_image: bool) -> str:
    """The segmentation request as the official evaluation (and pixelwise's pipeline) asks it."""
    q = " ".join(text.split())
    if re.search(r"\b(segment\w*|masks?)\b", q, re.IGNORECASE):
        return q
    if q[-1:] in ".?!":
        return f"{q} Please provide the segmentation mask."
    return SEG_QUERY_TEMPLATES[0].format(q=strip_article(q), media="image" if is_image else "video")


def seg_first(answer: str) -> str:
    """An answer with one `<|seg|>` rewritten to start with it ("Sure, a large red circle <|seg|>." -> "<|seg|> Sure,
    a large red circle."): the token's state (the position before it) then reads the question alone, not a
    description the model writes first (answers with several `<|seg|>` are returned as they are)."""
    if answer.count(SEG) != 1:
        return answer
    rest = " ".join(answer.replace(SEG, " ").split()).replace(" .", ".").replace(" ,", ",")
    return f"{SEG} {rest}" if rest not in ("", ".") else f"{SEG}."


ANSWER_STYLES = ("native", "segment_first", "restate")


def pixelworld_conversations(sample: dict[str, Any], masks: np.ndarray, prompts: list, rng: random.Random,
                             answer_style: str = "native") -> list[Conversation]:
    """Conversations for one native PixelWorld sample (masks bool [K, T, H, W], prompts as core prompt types).

    `answer_style` of the single-object segmentation answers: "native" (PixelWorld's, which describe the target in
    full before `<|seg|>`: "Sure, a large yellow dotted cross <|seg|>." or a generic reply), "segment_first"
    (`seg_first`: the `<|seg|>` first), "restate" ("Sure, {the question's phrase} <|seg|>.": only words the question
    gives precede the token, so a model that cannot yet tell the target's other attributes has nothing to guess).
    """
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"answer_style {answer_style!r}: use one of {', '.join(ANSWER_STYLES)}")
    task = sample["task"]
    is_image = int(sample["num_frames"]) == 1
    kind = "image" if is_image else "video"
    out: list[Conversation] = []
    if task in ("referring", "motion_referring", "reasoning", "multi_target"):
        r = rng.random()
        phrase = sample.get("phrase")
        if r < 0.3 or not phrase:
            q = sample["question"] if rng.random() < 0.5 or not phrase else official_seg_question(sample["question"], is_image)
        elif r < 0.85:
            q = official_seg_question(phrase, is_image)
        else:
            q = seg_question(phrase, is_image, rng)
        if answer_style == "restate" and phrase and masks.shape[0] == 1:
            a = f"Sure, {phrase} {SEG}."
        elif task in ("multi_target", "reasoning") or rng.random() < 0.7:
            a = native_answer(sample["answer"])
            a = seg_first(a) if answer_style == "segment_first" else a
        else:
            a = f"{SEG}." if answer_style == "segment_first" else rng.choice(SEG_RESPONSES)
        out.append(Conversation(f"seg_{kind}", [(q, a)], seg_masks=masks))
        return out
    if task not in ("region", "pixelqa") or not prompts:
        if task in ("grounding", "detection"):
            out.append(Conversation("text", [(sample["question"], sample["answer"])]))
        return out
    p = prompts[0]
    options = sample.get("options")
    base = _base_question(sample) if options else sample["question"]
    answer = _mc_answer(options, sample["correct"]) if options else sample["answer"]
    pk = "point" if isinstance(p, Point) else "box" if isinstance(p, Box) else "mask"
    r = rng.random()
    if task == "pixelqa" and r < 0.15:  # PixelWorld's native one-round form: segment + answer
        text = sample["question"].replace("<region>", f"[0] {REF}")
        out.append(Conversation(f"mem_{pk}", [(text, native_answer(sample["answer"]))], seg_masks=masks,
                                ref_prompts=[p]))
        return out
    if pk != "mask" and r < (0.55 if task == "pixelqa" else 0.35):
        # round 1 (localization): the region as `[0] <|ref|>`, answer `[0] <|seg|>`, SAM2 targets over the clip
        text = localize_text(base.replace("<region>", f"[0] {REF}"), options)
        seg = masks if task == "pixelqa" else _prompt_track(masks, p, is_image)
        out.append(Conversation(f"mem_{pk}", [(text, f"[0] {SEG}")], seg_masks=seg, ref_prompts=[p]))
        return out
    if pk != "mask" and r < 0.5 and not options:  # a direct <|ref|> question (stage-1 style referring)
        out.append(Conversation(f"ref_{pk}", [(base.replace("<region>", f"[0] {REF}"), answer)], ref_prompts=[p]))
        return out
    # round 2 / mask prompts: the region's masks as <|mem|> memory
    if task == "pixelqa" or (pk != "mask" and rng.random() < 0.5):
        visible = [t for t in range(masks.shape[1]) if masks[0, t].any()]
        if not visible:
            return out
        pick = visible if task == "pixelqa" and rng.random() < 0.5 else [pp.frame for pp in prompts]
        mem = [MaskPrompt(masks[0, t], t) for t in pick if masks[0, t].any()]
    else:
        mem = [pp if isinstance(pp, MaskPrompt) else MaskPrompt(masks[0, pp.frame], pp.frame) for pp in prompts]
        mem = [m for m in mem if np.asarray(m.mask).any()]
    if not mem:
        return out
    text = base.replace("<region>", "[0]")
    if options:
        text = mcq_text(text, options)
    out.append(Conversation(f"region_{kind}", [(text, answer)], mem_masks=[mem]))
    return out


def _prompt_track(masks: np.ndarray, p: Any, is_image: bool) -> np.ndarray:
    """SAM2 targets of a localization round: the region's object over the clip (its masks as the sample has them)."""
    return masks[:1]


def corpus_texts(sample: dict[str, Any]) -> list[str]:
    """Texts of a sample for building a tokenizer (questions, answers, phrases, options)."""
    texts = [sample.get("question") or "", sample.get("answer") or "", sample.get("phrase") or ""]
    texts += list(sample.get("options") or [])
    return [t for t in texts if t]


TEMPLATE_CORPUS = (
    SEG_QUERY_TEMPLATES + SEG_SENTENCE_TEMPLATES + SEG_RESPONSES + MEM_ROUND1_TEMPLATES
    + ["You are a helpful assistant.", "system\n", "user\n", "assistant\n", MC_PRIME,
       "Here is an image with the following highlighted regions:\n[0]: ",
       "Here is a video with 16 frames denoted as <1> to <16>. The highlighted regions are as follows:\n",
       "[0]: <1>-<2> <3>-<4> <5>-<6> <7>-<8> <9>-<10> <11>-<12> <13>-<14> <15>-<16>",
       "Please only give the best option.", "Options:\n(A) (B) (C) (D)", "image video"]
)
