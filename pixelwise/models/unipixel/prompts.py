"""The question templates of the official UniPixel inference and evaluation scripts, and region ids in questions.

The released weights were trained and measured with these sentences, so the pipeline asks with them too:

* segmentation: "Please segment the {phrase} in this {image|video}." for a short phrase (leading article dropped,
  first letter lower-cased), "{sentence} Please provide the segmentation mask." for a sentence or a question;
* multiple choice: the question, "\\nOptions:\\n(A) ...", "\\nPlease only give the best option.", and the answer
  primed with "The best option is (";
* PixelQA localization (round 1 of `ask` with point/box regions): every region mention `[k]` becomes
  `[k] <|ref|>`, then "Please localize the relevant objects with IDs."; the answer `[k] <|seg|> [j] <|seg|>` is
  given (teacher forcing) and its `<|seg|>` states segment the regions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pixelwise.core.errors import PromptError
from pixelwise.models.unipixel.processing_unipixel import SEG_TOKEN, ref_text

MCQ_ANSWER_PREFIX = "The best option is ("
LOCALIZE_SUFFIX = "Please localize the relevant objects with IDs."
_ARTICLE = re.compile(r"^(the|a|an)\s+", re.IGNORECASE)
_ASKS_FOR_MASK = re.compile(r"\b(segment\w*|masks?)\b", re.IGNORECASE)
_LETTERED = re.compile(r"^\s*\(?[A-Z]\)")


def segmentation_question(text: str, is_image: bool) -> str:
    """A user's text -> the official segmentation request (text that already asks for a mask is kept as it is)."""
    q = " ".join(text.split())
    if not q:
        raise PromptError("the text to segment is empty")
    if _ASKS_FOR_MASK.search(q):
        return q
    if q[-1] in ".?!":
        return f"{q} Please provide the segmentation mask."
    phrase = _ARTICLE.sub("", q)
    phrase = phrase[:1].lower() + phrase[1:]
    return f"Please segment the {phrase} in this {'image' if is_image else 'video'}."


def lettered_options(options: Sequence[str]) -> list[str]:
    """Options as "(A) text"; options already written "(X) ..." or "X) ..." are kept."""
    if not options:
        raise PromptError("a multiple-choice question needs at least one option")
    if len(options) > 26:
        raise PromptError(f"{len(options)} options: at most 26 (A-Z)")
    return [o.strip() if _LETTERED.match(o) else f"({chr(ord('A') + i)}) {o.strip()}" for i, o in enumerate(options)]


def options_block(options: Sequence[str]) -> str:
    return "\nOptions:\n" + "\n".join(lettered_options(options))


def mcq_question(question: str, options: Sequence[str]) -> str:
    """The official multiple-choice prompt; answer it with `MCQ_ANSWER_PREFIX` as the assistant prefix."""
    return question.strip() + options_block(options) + "\nPlease only give the best option."


def with_refs(question: str, ids: Sequence[int]) -> tuple[str, list[int]]:
    """Write `[k] <|ref|>` for every mention `[k]` of a region id in `ids`; regions never mentioned are appended.

    Returns the text and the region id behind each `<|ref|>`, in text order (one visual prompt per token).
    """
    wanted = {int(k) for k in ids}
    order: list[int] = []

    def mark(m: re.Match) -> str:
        k = int(m.group(1))
        if k not in wanted:
            return m.group(0)
        order.append(k)
        return ref_text(k)

    text = re.sub(r"\[(\d+)\](?!\s*<\|ref\|>)", mark, question.strip())
    missing = [k for k in ids if k not in order]
    if missing:
        text = f"{text} {' '.join(ref_text(k) for k in missing)}"
        order += missing
    return text, order


def localize_question(question_with_refs: str) -> str:
    """Round 1 of PixelQA: the question (with its options) followed by the localization request."""
    q = question_with_refs.rstrip()
    return f"{q}{'' if q.endswith(('.', '?', '!')) else '.'} {LOCALIZE_SUFFIX}"


def localize_answer(ids: Sequence[int]) -> str:
    """The teacher-forced round-1 answer: one `[k] <|seg|>` per region, in region order."""
    return " ".join(f"[{k}] {SEG_TOKEN}" for k in ids)
