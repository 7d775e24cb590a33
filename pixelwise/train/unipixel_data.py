"""Data to UniPixel training examples: conversations (`pixelwise.data.templates`) -> tokens, labels, SAM2 targets.

One example is one sequence (the model's forward is batch-of-one, as the official model); a batch is a list of
examples whose losses are averaged (gradient accumulation happens over micro-batches of such lists). Examples carry
their `data_type`, so a sampler can group batches by type as the official `group_by_data_type` does.

Sources are read through one interface (`TrainSource`): native PixelWorld folders, and every public benchmark layout
that `pixelwise.eval.benchmarks` reads (a `Sample` becomes a segmentation or region conversation). `MixedSource`
mixes sources with sample rates. Augmentation randomness is a pure function of (seed, epoch, index), so a resumed
run sees exactly the examples an uninterrupted one would.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pixelwise.core.errors import ConfigError
from pixelwise.core.masks import mask_to_box
from pixelwise.core.media import load_media
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.data.formats.layouts import parse_name, reader
from pixelwise.data.pixelworld.dataset import PixelWorldDataset
from pixelwise.data.pixelworld import vocab
from pixelwise.data.pixelworld.grammar import describe_object
from pixelwise.data.pixelworld.render import render
from pixelwise.data.pixelworld.scene import Scene
from pixelwise.data.pixelworld.tasks import Ctx, box_text, video_choice_question
from pixelwise.data.templates import (
    ANSWER_STYLES,
    MC_PRIME,
    SEG,
    Conversation,
    mcq_text,
    pixelworld_conversations,
    seg_question,
)
from pixelwise.models.unipixel.processing_unipixel import (
    REF_TOKEN,
    SEG_TOKEN,
    masks_for_memory,
    mem_prefix,
    ref_prompt,
    video_message,
)


@dataclass
class Example:
    data_type: str
    inputs: Any  # UniPixelInputs
    labels_mask: torch.Tensor  # bool [L]: token i is supervised (assistant replies incl. their <|im_end|>)
    seg_targets: torch.Tensor | None  # bool [O, T, S, S] for the supervised <|seg|> tokens (in order)
    seg_index: list[int] = field(default_factory=list)  # which <|seg|> tokens (text order) are supervised
    frames_rgb: np.ndarray | None = None  # uint8 [T, H, W, 3] (for logging predicted masks)
    key: str = ""
    # per visual token (raster order over frame pairs) the class of the object covering it: [N, K] (one column per
    # label kind, colour and shape by default; -1 = no object), with the token ids of each kind's class words
    # (`visual_words`, when the scene is known)
    visual_words: torch.Tensor | None = None
    visual_word_ids: list[torch.Tensor] | None = None
    mem_words: torch.Tensor | None = None  # the same per `<|mem|>` token ([M, K], in the model's memory order)
    # the same per retrieval cell of the first SAM2 frame ([h*w, K]): the object under the cell's centre, which is
    # what SAM2 segments when clicked there (the object keys' proposals)
    cell_words: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------------- sources


class TrainSource:
    """A list of raw items; `conversations(i, rng)` -> (frames uint8 [T,H,W,3], [Conversation], key)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def scene(self, index: int) -> dict | None:
        """The item's PixelWorld scene graph (JSON) when the source has one (for per-token object labels)."""
        return None

    def conversations(self, index: int, rng: random.Random) -> tuple[np.ndarray, list[Conversation], str]:
        raise NotImplementedError

    def group_keys(self) -> list[str]:
        """A cheap data-type key per item (for type-grouped batches)."""
        return ["item"] * len(self)


class PixelWorldSource(TrainSource):
    """Native PixelWorld samples as conversations (`templates.pixelworld_conversations`, whose `answer_style` says
    what a segmentation answer says before its `<|seg|>`)."""

    def __init__(self, root: str | Path, tasks: list[str] | None = None, answer_style: str = "native"):
        if answer_style not in ANSWER_STYLES:
            raise ConfigError(f"answer_style {answer_style!r}: use one of {', '.join(ANSWER_STYLES)}")
        self.ds = PixelWorldDataset(root, tasks=tasks)
        self.answer_style = answer_style

    def __len__(self) -> int:
        return len(self.ds)

    def group_keys(self) -> list[str]:
        video = self.ds.record(0)["num_frames"] > 1 if len(self.ds) else False
        return [f"{t}_{'video' if video else 'image'}" for t in self.ds.tasks]

    def scene(self, index: int) -> dict | None:
        return self.ds.record(index).get("scene")

    def conversations(self, index, rng):
        item = self.ds[index]
        convs = pixelworld_conversations(item.sample, item.masks, item.prompts, rng, self.answer_style)
        return item.frames, convs, item.sample["id"]


class BenchmarkSource(TrainSource):
    """Any public benchmark layout (`data.formats.layouts`: refcoco, mevis, revos, videorefer, ...) as training
    data."""

    def __init__(self, benchmark: str, root: str | Path):
        self.canonical = parse_name(benchmark)[0]
        self.samples = reader(benchmark)(Path(root))

    def __len__(self) -> int:
        return len(self.samples)

    def group_keys(self) -> list[str]:
        return [f"{self.canonical}_{'qa' if s.options else 'seg'}" for s in self.samples]

    def conversations(self, index, rng):
        s = self.samples[index]
        frames = np.stack([load_media(f).frames[0] for f in s.frames]) if isinstance(s.frames, list) else s.frames
        is_image = frames.shape[0] == 1
        kind = "image" if is_image else "video"
        if s.options:  # region multiple choice
            masks = np.stack([t.load() for t in s.targets]) if s.targets else None
            mem = [[p if isinstance(p, MaskPrompt) else MaskPrompt(masks[0, p.frame], p.frame)] for p in s.prompts[:1]]
            text = re.sub(r"<object\d+><region>", "[0]", s.text) + " Please only give the best option."
            conv = Conversation(f"region_{kind}", [(text, f"The best option is {s.answer}.")], mem_masks=mem)
            return frames, [conv], s.key
        gt = s.gt_union()[None]
        q = seg_question(s.text, is_image, rng)
        return frames, [Conversation(f"seg_{kind}", [(q, "Sure, it is <|seg|>.")], seg_masks=gt)], s.key


DENSE_QUESTIONS = (
    "Give the bounding box of every object.",
    "List every object in this image with its box.",
    "Locate each object and output its box.",
)
DENSE_SEG_QUESTIONS = (
    "Please segment every object in this image.",
    "Segment each object in this image and name it.",
)


class DenseGroundingSource(TrainSource):
    """Every object of a PixelWorld scene in one answer, left to right and top to bottom: as text with its box
    (`<box>x1,y1,x2,y2</box>` on PixelWorld's box grid), named and segmented (`<|seg|>`, one SAM2 target each), or,
    given every object's mask as a region (`<|mem|>` memory), named region by region ("[0] is a small red circle").

    A referring conversation supervises about 20 answer tokens and one mask; this one supervises every object of the
    image (about 5 names and boxes, ~80 tokens) and ties each name to a position, the thing a from-scratch LLM
    lacks (docs/models/unipixel-tiny.md). Scenes come from native folders and are re-rendered (first frame).
    """

    def __init__(self, root: str | Path, seg_rate: float = 0.5, mem_rate: float = 0.0):
        import json

        self.scenes: list[dict] = []
        seen: set[str] = set()
        with open(Path(root) / "samples.jsonl") as f:
            for line in f:
                scene = json.loads(line)["scene"]
                key = json.dumps(scene, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    self.scenes.append(scene)
        self.seg_rate = seg_rate
        self.mem_rate = mem_rate  # the rest (1 - seg_rate - mem_rate) are boxes as text

    def __len__(self) -> int:
        return len(self.scenes)

    def group_keys(self) -> list[str]:
        return ["dense_image"] * len(self)

    def scene(self, index: int) -> dict | None:
        return self.scenes[int(index)]

    def conversations(self, index, rng):
        scene = Scene.from_json(self.scenes[int(index)])
        rgb, vis, _ = render(scene, [0])
        objs = []
        for k, o in enumerate(scene.objects):
            if vis[k, 0].sum() >= 12:
                x1, y1, x2, y2 = mask_to_box(vis[k, 0])
                objs.append((y1 // 16, x1, k, o, (x1, y1, x2, y2)))
        if not objs:
            return rgb, [], f"scene-{index}"
        objs.sort(key=lambda t: (t[0], t[1]))
        names = [describe_object(o) for *_, o, _ in objs]
        r = rng.random()
        if r < self.mem_rate:  # regions by memory: the mask-pooled features of each object must be named
            order = list(range(len(objs)))
            rng.shuffle(order)  # region ids in random order: the name must come from the memory, not the position
            mem = [[MaskPrompt(vis[objs[j][2], 0], 0)] for j in order]
            answer = ", ".join(f"[{i}] is {names[j]}" for i, j in enumerate(order))
            q = rng.choice(("What is each highlighted region?", "Name every highlighted region."))
            conv = Conversation("dense_mem", [(q, answer[:1].upper() + answer[1:] + ".")], mem_masks=mem)
        elif r < self.mem_rate + self.seg_rate:
            answer = ", ".join(f"{n} {SEG}" for n in names)
            masks = np.stack([vis[k] for _, _, k, _, _ in objs])  # [O, 1, H, W]
            conv = Conversation("dense_seg", [(rng.choice(DENSE_SEG_QUESTIONS), answer[:1].upper() + answer[1:] + ".")],
                                seg_masks=masks)
        else:
            answer = ", ".join(f"{n} {box_text(b, scene.width, scene.height)}" for (*_, b), n in zip(objs, names))
            conv = Conversation("dense_box", [(rng.choice(DENSE_QUESTIONS), answer[:1].upper() + answer[1:] + ".")])
        return rgb, [conv], f"scene-{index}"



NUMBER_WORDS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten")


class SceneQuestionSource(TrainSource):
    """Short questions that only the image answers, several about one PixelWorld scene in one conversation ("What
    color is the star?" "It is red." "How many blue objects are there?" "Two." ...).

    A referring answer restates its question's words ("Sure, a large red circle ..."), so a model can be trained on
    it for long without reading its image (docs/models/unipixel-tiny.md, session 5); here every answer word that
    varies comes from the pixels, and `turns` questions share one prefill. Kinds: the colour of a shape that occurs
    once, the shape of a colour that occurs once, how many objects have a colour, and whether a colour-shape
    combination is there (half of them are not). Scenes come from native folders and are re-rendered (first frame).
    """

    def __init__(self, root: str | Path, turns: int = 4):
        self.scenes = DenseGroundingSource(root).scenes
        self.turns = turns

    def __len__(self) -> int:
        return len(self.scenes)

    def scene(self, index: int) -> dict | None:
        return self.scenes[int(index)]

    def group_keys(self) -> list[str]:
        return ["scene_qa"] * len(self)

    def first_frame(self, index: int) -> tuple[Scene, np.ndarray, np.ndarray, list[int]]:
        """Scene `index` rendered on its first frame -> (scene, rgb, visibility masks, indices of its objects that
        cover at least 12 pixels there)."""
        scene = Scene.from_json(self.scenes[int(index)])
        rgb, vis, _ = render(scene, [0])
        return scene, rgb, vis, [k for k in range(len(scene.objects)) if vis[k, 0].sum() >= 12]

    def conversations(self, index, rng):
        scene, rgb, _, visible = self.first_frame(index)
        seen = [scene.objects[k] for k in visible]
        if not seen:
            return rgb, [], f"scene-{index}"
        colors = [o.color_at(0) for o in seen]
        shapes = [o.shape for o in seen]
        asks = []
        for o, c in zip(seen, colors):
            if shapes.count(o.shape) == 1:
                asks.append((f"What color is the {o.shape}?", f"It is {c}."))
            if colors.count(c) == 1:
                asks.append((f"What shape is the {c} object?", f"It is a {o.shape}."))
        for c in sorted(set(colors)) + [rng.choice(list(vocab.COLORS))]:
            n = colors.count(c)
            asks.append((f"How many {c} objects are there?", f"{NUMBER_WORDS[min(n, 10)]}."))
        present = {(c, sh) for c, sh in zip(colors, shapes)}
        o = rng.choice(seen)
        asks.append((f"Is there a {o.color_at(0)} {o.shape}?", "Yes."))
        c, sh = rng.choice(list(vocab.COLORS)), rng.choice(vocab.SHAPES)
        asks.append((f"Is there a {c} {sh}?", "Yes." if (c, sh) in present else "No."))
        rng.shuffle(asks)
        return rgb, [Conversation("scene_qa", asks[: self.turns])], f"scene-{index}"


OPTION_LETTERS = "ABCD"
REGION_OPEN_QUESTIONS = ("What is [{}]?", "What is [{}] in the image?", "Describe [{}].")
COUNT_OPTIONS = ("none", "one", "two", "three", "four", "five")


class RegionChoiceSource(SceneQuestionSource):
    """Multiple-choice questions about highlighted regions, several per PixelWorld scene in one conversation, in the
    form the region benchmarks use ("What color is [1]?" + four lettered options -> "The best option is (C) red.").

    The region rows of PixelWorld give about one such question per 30 training conversations, and the session-7 model
    answered all of them with one letter whatever the question (docs/models/unipixel-tiny.md): picking the option that
    matches a region is a step of its own, which this source supervises `turns` times per prefill. Every visible
    object of the first frame is a region (`<|mem|>`, ids in random order); kinds: its colour, its shape, and how many
    other objects share its colour. Scenes and `turns` as in `SceneQuestionSource`. A share `open_rate` of the turns
    are open questions instead ("What is [2]?" -> "[2] is a small red circle.", the region lists' form, which names
    the region right where its number carries it: `region_mentions`; `open_answer: it` answers "It is a ..."), the way `pixelwise ask` and the demo ask about a
    clicked object. A share `hint_rate` of the option questions state the answer before asking
    ("[2] is red. What color is [2]?"): then only picking the option is left to learn (a curriculum step).
    """

    def __init__(self, root: str | Path, turns: int = 4, open_rate: float = 0.0, hint_rate: float = 0.0,
                 open_answer: str = "region"):
        super().__init__(root, turns)
        if open_answer not in ("region", "it"):
            raise ConfigError(f"open_answer {open_answer!r}: use 'region' ('[2] is a ...') or 'it' ('It is a ...')")
        self.open_rate = open_rate
        self.open_answer = open_answer
        self.hint_rate = hint_rate  # option questions that state the answer first ("[2] is red. What color is [2]?")

    def group_keys(self) -> list[str]:
        return ["region_choice"] * len(self)

    def conversations(self, index, rng):
        scene, rgb, vis, seen = self.first_frame(index)
        if not seen:
            return rgb, [], f"scene-{index}"
        rng.shuffle(seen)  # region ids in random order: the answer must come from the memory, not the position
        colors = [o.color_at(0) for o in scene.objects]
        turns = []
        for _ in range(self.turns):
            i = rng.randrange(len(seen))
            o = scene.objects[seen[i]]
            if self.open_rate and rng.random() < self.open_rate:
                subject = f"[{i}] is" if self.open_answer == "region" else "It is"
                turns.append((rng.choice(REGION_OPEN_QUESTIONS).format(i), f"{subject} {describe_object(o)}."))
                continue
            kind = rng.choice(("color", "shape", "count"))
            if kind == "color":
                q, correct, pool = f"What color is [{i}]?", colors[seen[i]], vocab.COLORS
            elif kind == "shape":
                q, correct, pool = f"What shape is [{i}]?", o.shape, vocab.SHAPES
            else:
                n = sum(1 for k in seen if k != seen[i] and colors[k] == colors[seen[i]])
                if n >= len(COUNT_OPTIONS):
                    continue
                q, correct, pool = (f"How many other objects have the same color as [{i}]?", COUNT_OPTIONS[n],
                                    COUNT_OPTIONS)
            if self.hint_rate and rng.random() < self.hint_rate:  # only the option step is left to learn
                q = f"[{i}] is {correct}. {q}"
            opts = [correct, *rng.sample([w for w in pool if w != correct], 3)]
            rng.shuffle(opts)
            letter = OPTION_LETTERS[opts.index(correct)]
            options = [f"({c}) {w}" for c, w in zip(OPTION_LETTERS, opts)]
            turns.append((mcq_text(q, options), f"{MC_PRIME}{letter}) {correct}."))
        mem = [[MaskPrompt(vis[k, 0], 0)] for k in seen]
        return rgb, [Conversation("region_choice", turns, mem_masks=mem)] if turns else [], f"scene-{index}"


class RegionMotionSource(SceneQuestionSource):
    """Multiple-choice questions about regions across a clip, several per PixelWorld video in one conversation: the
    question kinds and wording of PixelWorld's video region rows (`tasks.video_choice_question`: direction, events,
    colour at the end, shape, count), answered "The best option is (C) left.".

    In those rows the tiny model answered direction questions below chance (0.06-0.38 over eight row-seeds, mostly
    "left" or "right" whatever the truth; session 13), also when the region was given on four frames: one direction
    question per ~20 training conversations had not taught it to read where a region goes. Here every visible object
    is a region (`<|mem|>`, ids in random order) with its masks on `frames` frames spread over the clip (where it
    covers at least 12 pixels), so each region's memory spans the clip, and `turns` questions share one prefill."""

    def __init__(self, root: str | Path, turns: int = 4, frames: int = 4):
        super().__init__(root, turns)
        self.frames = frames

    def group_keys(self) -> list[str]:
        return ["region_motion"] * len(self)

    def conversations(self, index, rng):
        scene = Scene.from_json(self.scenes[int(index)])
        if scene.num_frames < 2:
            raise ConfigError(f"pixelworld_region_motion needs video scenes; scene {index} is an image")
        rgb, vis, area = render(scene)
        picks = np.linspace(0, scene.num_frames - 1, self.frames).round().astype(int)
        shown = vis[:, picks].sum((2, 3)) >= 12  # [objects, picks]: covers at least 12 pixels there
        seen = [k for k in range(len(scene.objects)) if shown[k].sum() >= 2]
        if not seen:
            return rgb, [], f"scene-{index}"
        rng.shuffle(seen)  # region ids in random order: the answer must come from the memory, not the position
        ctx = Ctx(scene, rgb, vis, area, np.random.default_rng(rng.randrange(1 << 32)), "train")
        turns = []
        for _ in range(self.turns):
            i = rng.randrange(len(seen))
            asked = video_choice_question(ctx, scene.objects[seen[i]], f"[{i}]")
            if asked is None:
                continue
            q, _, options, letter = asked
            correct = options[OPTION_LETTERS.index(letter)].split(") ", 1)[1]
            turns.append((mcq_text(q, options), f"{MC_PRIME}{letter}) {correct}."))
        mem = [[MaskPrompt(vis[k, t], int(t)) for t, on in zip(picks, shown[k]) if on] for k in seen]
        return rgb, [Conversation("region_motion", turns, mem_masks=mem)] if turns else [], f"scene-{index}"


class MixedSource(TrainSource):
    """Sources mixed with sample rates: source k contributes round(rate_k * len_k) items per epoch (repeats or a
    deterministic subset)."""

    def __init__(self, sources: list[tuple[TrainSource, float]], seed: int = 0):
        self.sources = sources
        self.index: list[tuple[int, int]] = []
        g = np.random.default_rng(seed)
        for k, (src, rate) in enumerate(sources):
            n = int(round(rate * len(src)))
            full, rest = divmod(n, len(src)) if len(src) else (0, 0)
            items = list(range(len(src))) * full + sorted(g.choice(len(src), rest, replace=False).tolist())
            self.index += [(k, i) for i in items]

    def __len__(self) -> int:
        return len(self.index)

    def group_keys(self) -> list[str]:
        per = [src.group_keys() for src, _ in self.sources]
        return [per[k][i] for k, i in self.index]

    def scene(self, index: int) -> dict | None:
        k, i = self.index[index]
        return self.sources[k][0].scene(i)

    def conversations(self, index, rng):
        k, i = self.index[index]
        return self.sources[k][0].conversations(i, rng)


# --------------------------------------------------------------------------------------------------- examples


def sample_frame_indices(num: int, want: int, keep: list[int], rng: random.Random | None) -> list[int]:
    """`want` frames of `num` spread uniformly (random jitter in training), always containing the frames in `keep`."""
    if num <= want:
        return list(range(num))
    if rng is None:
        idx = np.linspace(0, num - 1, want).round().astype(int).tolist()
    else:
        edges = np.linspace(0, num, want + 1)
        idx = [rng.randrange(int(edges[i]), max(int(edges[i]) + 1, int(edges[i + 1]))) for i in range(want)]
    for k in keep:
        if k not in idx:
            j = int(np.argmin([abs(i - k) if i not in keep else 1 << 30 for i in idx]))
            idx[j] = k
    return sorted(set(idx))


def _assistant_mask(ids: torch.Tensor, start_id: int, end_id: int, header: list[int]) -> torch.Tensor:
    """bool [L]: tokens of assistant replies (after `<|im_start|>assistant\\n`, up to and including `<|im_end|>`)."""
    ids_l = ids.tolist()
    mask = torch.zeros(len(ids_l), dtype=torch.bool)
    i, n = 0, len(ids_l)
    while i < n:
        if ids_l[i] == start_id and ids_l[i + 1: i + 1 + len(header)] == header:
            j = i + 1 + len(header)
            while j < n and ids_l[j] != end_id:
                mask[j] = True
                j += 1
            if j < n:
                mask[j] = True
            i = j
        i += 1
    return mask


class ExampleBuilder:
    """Conversation + frames -> `Example` (processor inputs, label mask, SAM2 targets at S x S)."""

    def __init__(self, processor, video_frames: tuple[int, ...] = (8, 16), sample_objects: int = 5,
                 sam2_max_frames: int | None = None, visual_words: bool | Sequence[str] = False):
        self.processor = processor
        # the token ids of " red", " circle", ...: the classes of the visual-word labels (one token each); True =
        # colour and shape, or the kinds named (`WORD_KINDS`)
        kinds = DEFAULT_WORD_KINDS if visual_words is True else tuple(visual_words or ())
        self.word_ids = word_classes(processor, kinds) if kinds else None
        self.video_frames = video_frames
        self.sample_objects = sample_objects
        self.sam2_max_frames = sam2_max_frames  # SAM2 is supervised on at most this many of the LLM's frames
        self.im_start = processor.token_id("<|im_start|>")
        self.im_end = processor.token_id("<|im_end|>")
        self.header = processor.encode("assistant\n")
        self.seg_id = processor.token_id(SEG_TOKEN)
        self.ref_token = REF_TOKEN

    def __call__(self, frames: np.ndarray, conv: Conversation, rng: random.Random | None, key: str = "",
                 scene: dict | None = None) -> Example:
        total = frames.shape[0]
        keep = sorted({p.frame for p in conv.ref_prompts} | {m.frame for obj in conv.mem_masks for m in obj})
        want = rng.choice(self.video_frames) if rng is not None else max(self.video_frames)
        if len(keep) > want // 2:  # many prompted frames (memory over a clip): an even subset of them
            keep = [keep[int(i)] for i in np.linspace(0, len(keep) - 1, max(1, want // 2)).round()]
        idx = sample_frame_indices(total, want, keep, rng) if total > 1 else [0]
        remap = {t: k for k, t in enumerate(idx)}
        sel = frames[idx]
        t_n, h, w = sel.shape[0], sel.shape[1], sel.shape[2]
        is_image = t_n == 1

        turns = list(conv.turns)
        refer_mask = None
        if conv.mem_masks:
            objs = []
            for obj in conv.mem_masks:
                kept = [MaskPrompt(m.mask, remap[m.frame]) for m in obj if m.frame in remap]
                if not kept:  # none of its frames sampled: its first mask on the nearest sampled frame
                    near = min(range(t_n), key=lambda k: abs(idx[k] - obj[0].frame))
                    kept = [MaskPrompt(obj[0].mask, near)]
                objs.append(kept)
            label = masks_for_memory(objs, t_n, (h, w))
            # the visual grid is needed for the pooled mask: process the frames once here
            _, _, thw = self.processor.process_frames(sel)
            _, refer_mask = self.processor.memory_inputs(label, thw)
            prefix = mem_prefix(refer_mask, t_n, is_image)
            turns[0] = (prefix + turns[0][0], turns[0][1])
        messages: list[dict[str, Any]] = []
        for k, (u, a) in enumerate(turns):
            if k == 0:
                msg = video_message(u, num_frames=t_n)
            else:
                msg = {"role": "user", "content": u}
            messages += [msg, {"role": "assistant", "content": a}]
        inputs = self.processor(sel, messages, add_generation_prompt=False)
        inputs.refer_mask = refer_mask
        if conv.ref_prompts:
            ps = []
            for p in conv.ref_prompts:
                p = Point(p.x, p.y, remap[p.frame]) if isinstance(p, Point) else Box(p.x1, p.y1, p.x2, p.y2, remap[p.frame])
                ps.append(ref_prompt(p, (h, w), self.processor.sam2_image_size, t_n))
            inputs.ref_prompts = ps
        labels_mask = _assistant_mask(inputs.input_ids, self.im_start, self.im_end, self.header)

        sam2_pos = list(range(t_n))
        if self.sam2_max_frames and t_n > self.sam2_max_frames:  # spread over the clip, first frame kept (prompted)
            sam2_pos = np.linspace(0, t_n - 1, self.sam2_max_frames).round().astype(int).tolist()
            if refer_mask is not None:  # the pairs' first frames, for models that describe a region on its own pair
                inputs.region_frames = inputs.sam2_frames[::self.processor.temporal_patch_size]
            inputs.sam2_frames = inputs.sam2_frames[sam2_pos]
        seg_targets, seg_index = None, []
        n_seg = int((inputs.input_ids == self.seg_id).sum())
        if n_seg and conv.seg_masks is not None:
            masks = np.asarray(conv.seg_masks)[:, idx][:, sam2_pos]
            if masks.shape[0] != n_seg:
                raise ValueError(f"{key}: {n_seg} <|seg|> tokens for {masks.shape[0]} target masks")
            seg_index = list(range(n_seg))
            if len(seg_index) > self.sample_objects:
                seg_index = sorted((rng or random.Random(0)).sample(seg_index, self.sample_objects))
            s = self.processor.sam2_image_size
            m = torch.from_numpy(masks[seg_index]).to(torch.float32)
            if m.shape[-2:] != (s, s):
                m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            seg_targets = m > 0.5
        ex = Example(conv.data_type, inputs, labels_mask, seg_targets, seg_index, sel[sam2_pos], key)
        if self.word_ids is not None and scene is not None:
            world = Scene.from_json(scene)
            ex.visual_words = visual_word_labels(world, idx, inputs.video_grid_thw, self.word_ids)
            ex.visual_word_ids = self.word_ids[1]
            if refer_mask is not None:
                ex.mem_words = memory_word_labels(world, conv.mem_masks, refer_mask, self.word_ids)
            cells = self.processor.sam2_image_size // SAM2_STRIDE  # the proposals' cells on the first frame
            ex.cell_words = click_word_labels(world, idx[0], (cells, cells), self.word_ids)
        return ex


class UniPixelTrainDataset:
    """Map-style dataset of `Example`s over a `TrainSource`; item randomness = f(seed, epoch, index)."""

    def __init__(self, source: TrainSource, processor, seed: int = 0, video_frames: tuple[int, ...] = (8, 16),
                 sample_objects: int = 5, augment: bool = True, sam2_max_frames: int | None = None,
                 visual_words: bool | Sequence[str] = False):
        self.source = source
        self.builder = ExampleBuilder(processor, video_frames, sample_objects, sam2_max_frames, visual_words)
        self.seed = seed
        self.epoch = 0
        self.augment = augment

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> Example | None:
        rng = random.Random(hash((self.seed, self.epoch, int(index))) & 0xFFFFFFFF)
        frames, convs, key = self.source.conversations(int(index), rng)
        if not convs:
            return None
        conv = convs[rng.randrange(len(convs))]
        scene = self.source.scene(int(index)) if self.builder.word_ids is not None else None
        return self.builder(frames, conv, rng if self.augment else None, key, scene)


# What the visual-word labels name, per kind: the scene's value -> the word PixelWorld's phrases use for it ("plain"
# for a solid texture). `visual_words` picks the kinds; colour and shape were the only ones until session 13.
WORD_KINDS: dict[str, dict[str, str]] = {
    "color": {c: c for c in vocab.COLORS},
    "shape": {s: s for s in vocab.SHAPES},
    "texture": {"solid": "plain", "striped": "striped", "dotted": "dotted"},
    "size": {s: s for s in vocab.SIZES},
}
DEFAULT_WORD_KINDS = ("color", "shape")
_KIND_OF_CLASSES = {tuple(classes): kind for kind, classes in WORD_KINDS.items()}  # the class sets are disjoint
SAM2_STRIDE = 16  # SAM2's image embedding (the retrieval grid) is the frame at 1/16


def word_classes(processor, kinds: Sequence[str] = DEFAULT_WORD_KINDS) -> tuple[list[list[str]], list[torch.Tensor]]:
    """(the classes (scene values) per label kind, the token ids of their words per kind): " red" ..., " circle" ...,
    " plain" ..., one token each."""
    names, ids = [], []
    for kind in kinds:
        if kind not in WORD_KINDS:
            raise ConfigError(f"visual words: unknown kind {kind!r}; use {', '.join(WORD_KINDS)}")
        row = []
        for w in WORD_KINDS[kind].values():
            t = processor.encode(" " + w)
            if len(t) != 1:
                raise ValueError(f"visual words: {w!r} is {len(t)} tokens in this tokenizer, not one")
            row.append(t[0])
        names.append(list(WORD_KINDS[kind]))
        ids.append(torch.tensor(row))
    return names, ids


def object_labels(obj, frame: int, names: list[list[str]], width: int) -> list[int]:
    """The class index of each label kind of `names` (`word_classes`, in its order) for one scene object on a frame
    (its size: the category nearest its radius on that frame, so a growing object changes class)."""
    r = float(obj.r[min(frame, len(obj.r) - 1)])
    size = min(vocab.SIZES, key=lambda c: abs(vocab.radius_for(c, width) - r))
    values = {"color": obj.color_at(frame), "shape": obj.shape, "texture": obj.texture, "size": size}
    return [classes.index(values[_KIND_OF_CLASSES[tuple(classes)]]) for classes in names]


def visual_word_labels(scene: Scene, frame_idx: list[int], grid_thw: torch.Tensor, classes, min_cover: float = 0.25
                       ) -> torch.Tensor:
    """Per visual token (frame pairs outer, merged-grid raster inner) the class index of the colour and the shape of
    the object that covers most of its cell ([N, 2], -1 where no object covers `min_cover` of it). A pair's token
    is labelled from its first frame (the second is the same frame or the next one)."""
    names = classes[0]
    t, h, w = (int(v) for v in grid_thw.reshape(-1, 3)[0])
    gh, gw = h // 2, w // 2
    firsts = [frame_idx[min(2 * g, len(frame_idx) - 1)] for g in range(t)]
    _, vis, _ = render(scene, firsts)  # bool [O, t, H, W]
    cover = F.adaptive_avg_pool2d(torch.from_numpy(vis).float().flatten(0, 1), (gh, gw)).view(vis.shape[0], t, gh, gw)
    best, who = cover.max(0) if vis.shape[0] else (torch.zeros(t, gh, gw), torch.zeros(t, gh, gw, dtype=torch.long))
    labels = torch.full((t, gh, gw, len(names)), -1, dtype=torch.long)
    for g in range(t):
        for o, obj in enumerate(scene.objects):
            cells = (who[g] == o) & (best[g] >= min_cover)
            labels[g][cells] = torch.tensor(object_labels(obj, firsts[g], names, scene.width))
    return labels.view(-1, len(names))


def click_word_labels(scene: Scene, frame: int, grid: tuple[int, int], classes) -> torch.Tensor:
    """Per cell of an h x w grid over the frame (raster order) the colour and shape class of the visible object under
    the cell's centre ([h*w, 2], -1 where the centre is background)."""
    names = classes[0]
    gh, gw = grid
    _, vis, _ = render(scene, [frame])  # bool [O, 1, H, W]
    height, width = vis.shape[-2:]
    ys = ((np.arange(gh) + 0.5) * height / gh).astype(int)
    xs = ((np.arange(gw) + 0.5) * width / gw).astype(int)
    under = vis[:, 0][:, ys][:, :, xs]  # [O, gh, gw]
    labels = torch.full((gh * gw, len(names)), -1, dtype=torch.long)
    for o, obj in enumerate(scene.objects):
        cells = torch.from_numpy(under[o].reshape(-1))
        labels[cells] = torch.tensor(object_labels(obj, frame, names, scene.width))
    return labels


def memory_word_labels(scene: Scene, mem_masks, refer_mask: torch.Tensor, classes) -> torch.Tensor:
    """Per `<|mem|>` token (objects outer, their non-empty frame pairs inner, as `pool_memory` orders them) the
    colour and shape class of the scene object its region is (the best overlap of its first mask)."""
    names = classes[0]
    out = []
    visible: dict[int, np.ndarray] = {}  # frame -> visible masks [O, H, W], rendered once per frame
    for o, obj_masks in enumerate(mem_masks):
        first = obj_masks[0]
        if first.frame not in visible:
            visible[first.frame] = render(scene, [first.frame])[1][:, 0]
        overlap = (visible[first.frame] & np.asarray(first.mask, bool)[None]).sum((1, 2))
        obj = scene.objects[int(overlap.argmax())]
        label = object_labels(obj, first.frame, names, scene.width) if overlap.max() else [-1] * len(names)
        out += [label] * int(refer_mask[:, o].flatten(1).any(1).sum())
    return torch.tensor(out, dtype=torch.long).view(-1, len(names))


def collate_examples(batch: list[Example | None]) -> list[Example]:
    return [b for b in batch if b is not None]
