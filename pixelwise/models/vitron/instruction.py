"""The discrete half of VITRON's hybrid message: a structured instruction the router writes and the back-ends read.

Router output (after any user-facing text):

    <module>MODULE</module><instruction>OP: TARGET [| ARG]</instruction>[SIG]

* MODULE: segmentation | editing | generation (the paper's module names; its letters A-G collapse to these three
  for PixelWorld media, images and clips alike);
* OP: segment | remove | recolor | move | add | generate;
* TARGET: the object the op acts on, copied from the request ("the blue square"); for add/generate, the object(s)
  to draw ("a medium green ring");
* ARG: recolor -> a color; move -> left/right/up/down; add -> a place ("top left"); generate -> none;
* `[SIG]` follows ops with a TARGET to segment: its hidden state is the continuous half of the message (the task
  embedding the segmentation back-end consumes).

`parse_instruction` is what the pipeline runs on generated text; `instruction_from_request` derives the label the
router is trained to write from a PixelWorld request (it is not used at inference).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pixelwise.core.errors import PixelwiseError
from pixelwise.models.vitron.configuration_vitron import (
    INSTR_CLOSE,
    INSTR_OPEN,
    MODULE_CLOSE,
    MODULE_OPEN,
    SIGNAL_TOKEN,
)

OP_MODULE = {"segment": "segmentation", "remove": "editing", "recolor": "editing", "move": "editing",
             "add": "editing", "generate": "generation"}
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "pink", "brown")
DIRECTIONS = ("left", "right", "up", "down")
PLACES = ("top left", "top right", "bottom left", "bottom right", "center")


class InstructionError(PixelwiseError):
    """The router's output is not a valid instruction (the paper's 'execution failure')."""


@dataclass
class Instruction:
    op: str
    target: str = ""
    arg: str = ""
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return OP_MODULE[self.op]

    @property
    def needs_signal(self) -> bool:
        return self.op in ("segment", "remove", "recolor", "move")

    def to_text(self) -> str:
        body = f"{self.op}: {self.target}" + (f" | {self.arg}" if self.arg else "")
        sig = SIGNAL_TOKEN if self.needs_signal else ""
        return f"{MODULE_OPEN}{self.module}{MODULE_CLOSE}{INSTR_OPEN}{body}{INSTR_CLOSE}{sig}"

    def validate(self) -> None:
        if self.op not in OP_MODULE:
            raise InstructionError(f"unknown op {self.op!r}")
        if self.needs_signal and not self.target:
            raise InstructionError(f"{self.op}: no target")
        if self.op == "recolor" and self.arg not in COLORS:
            raise InstructionError(f"recolor: {self.arg!r} is not a color")
        if self.op == "move" and self.arg not in DIRECTIONS:
            raise InstructionError(f"move: {self.arg!r} is not a direction")
        if self.op == "add" and self.arg not in PLACES:
            raise InstructionError(f"add: {self.arg!r} is not a place")


_CMD = re.compile(re.escape(MODULE_OPEN) + r"\s*(\w+)\s*" + re.escape(MODULE_CLOSE) + r"\s*" + re.escape(INSTR_OPEN)
                  + r"(.*?)" + re.escape(INSTR_CLOSE), re.S)


def split_answer(text: str) -> tuple[str, str | None]:
    """(user-facing text, command text or None)."""
    m = _CMD.search(text)
    if not m:
        return text.strip(), None
    return text[: m.start()].strip(), m.group(0)


def parse_instruction(text: str) -> Instruction | None:
    """The instruction in a router answer, or None when the answer is plain text (understanding)."""
    m = _CMD.search(text)
    if not m:
        return None
    module, body = m.group(1).strip(), m.group(2).strip()
    op, sep, rest = body.partition(":")
    if not sep:
        raise InstructionError(f"instruction {body!r} has no 'op:'")
    target, _, arg = rest.partition("|")
    ins = Instruction(op.strip().lower(), target.strip(), arg.strip().lower())
    ins.validate()
    if ins.module != module:
        raise InstructionError(f"op {ins.op!r} belongs to module {ins.module!r}, not {module!r}")
    return ins


# ---------------------------------------------------------------------------------------- training labels

_NOUN = r"(?:image|video|clip|frame|picture|scene)"
_REQUESTS: list[tuple[str, re.Pattern]] = [
    ("remove", re.compile(r"^(?:remove|erase|delete)\s+(?P<t>.+?)(?:\s+from the " + _NOUN + r")?\s*[.!]?$", re.I)),
    ("recolor", re.compile(r"^change the colou?r of\s+(?P<t>.+?)\s+to\s+(?P<a>\w+)\s*[.!]?$", re.I)),
    ("recolor", re.compile(r"^(?:make|paint|color|colour)\s+(?P<t>.+?)\s+(?P<a>" + "|".join(COLORS) + r")\s*[.!]?$",
                           re.I)),
    ("move", re.compile(r"^(?:move|push|shift)\s+(?P<t>.+?)\s+(?:a bit\s+)?(?:to the\s+)?(?P<a>left|right|up|down|top|"
                        r"bottom)\s*[.!]?$", re.I)),
    ("add", re.compile(r"^(?:draw|add|put)\s+(?P<t>an?\s+.+?)\s+(?:at|in)\s+the\s+(?P<a>" + "|".join(PLACES)
                       + r")(?:\s+of the " + _NOUN + r")?\s*[.!]?$", re.I)),
    ("generate", re.compile(r"^(?:generate|create|render|make)\s+(?:an?\s+)?(?:image|picture|scene)\s+(?:of|with)\s+"
                            r"(?P<t>.+?)\s*[.!]?$", re.I)),
    ("segment", re.compile(r"^(?:please segment|segment|highlight|find)\s+(?P<t>.+?)(?:\s+in (?:this|the) "
                           + _NOUN + r")?(?:\s+and output its mask)?\s*[.!?]?$", re.I)),
]


def instruction_from_request(request: str) -> Instruction | None:
    """The instruction a PixelWorld request asks for (training label), or None if it is not a command."""
    r = request.strip()
    for op, pat in _REQUESTS:
        m = pat.match(r)
        if not m:
            continue
        target = m.group("t").strip()
        arg = (m.groupdict().get("a") or "").lower()
        arg = {"top": "up", "bottom": "down"}.get(arg, arg) if op == "move" else arg
        ins = Instruction(op, target, arg)
        try:
            ins.validate()
        except InstructionError:
            return None
        return ins
    return None


def segmentation_instruction(phrase: str) -> Instruction:
    return Instruction("segment", phrase.strip())
