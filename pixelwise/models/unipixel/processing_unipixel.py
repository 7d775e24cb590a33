"""UniPixel input processing without torchvision: frames -> Qwen2.5-VL video patches, SAM2 frames, chat tokens.

What the official pipeline does, reproduced step by step (the conformance vectors check every output to the bit):
* Every visual input is a Qwen "video" made of a frame list; an image is a one-frame list, padded to two frames.
  Frame lists are padded to an even length by repeating the last frame (one temporal patch = two frames).
* Each frame is resized with qwen-vl-utils' `smart_resize` (factor 28, aspect kept, `min_pixels`/`max_pixels` budget)
  using PIL bicubic; the Qwen processor itself does not resize (`do_resize=False`).
* Normalisation is the fused rescale+normalise of transformers' fast processors: `(x - 255*mean) / (255*std)` in
  float32; patches are flattened as (C, temporal, 14, 14) in merge-block order.
* SAM2 sees the *un-padded* frames: float/255, bilinear antialiased resize to S x S, ImageNet mean/std.
* Frame lists use fps 2.0, so `second_per_grid_ts` = temporal_patch_size / fps = 1.0.

Prompt builders turn visual prompts into the model's inputs: `<|ref|>` for points/boxes (coordinates in the S x S SAM2
frame + the sampled-frame index) and `<|mem|>` for masks (a text prefix listing the highlighted regions per pair of
frames, plus the pooled-mask grid `refer_mask`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pixelwise.core.errors import CheckpointError, PromptError
from pixelwise.core.io import atomic_write_text, read_json
from pixelwise.core.prompts import Box, MaskPrompt, Point
from pixelwise.core.results import Result, SegObject
from pixelwise.modules.qwen_vl import (  # noqa: F401  (re-exported: the official names of UniPixel's processor)
    DEFAULT_FPS,
    DEFAULT_MAX_PIXELS_PER_16,
    DEFAULT_MIN_PIXELS,
    DEFAULT_SYSTEM_PROMPT,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    VIDEO_PAD,
    VISION_PLACEHOLDER,
    default_max_pixels,
    patchify,
    render_chat,
    resize_for_llm,
    smart_resize,
    video_message,
)
from pixelwise.modules.qwen_vl import check_frames as _check_frames
from pixelwise.modules.vl_processing import load_tokenizer

REF_TOKEN, SEG_TOKEN, MEM_TOKEN = "<|ref|>", "<|seg|>", "<|mem|>"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ----------------------------------------------------------------------------------------------- resizing


def sam2_transform(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, S, S]: /255, bilinear antialiased resize, ImageNet normalisation."""
    frames = _check_frames(frames)
    x = torch.tensor(frames).permute(0, 3, 1, 2).to(torch.float32) / 255.0  # a copy: frames may be read-only
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean) / std





# ----------------------------------------------------------------------------------------------- prompts


@dataclass
class RefPrompt:
    """One `<|ref|>` object: SAM2-frame coordinates [1, n, 2], labels [1, n] (1 point, 2/3 box corners), frame."""

    coords: torch.Tensor
    labels: torch.Tensor
    frame: int

    @property
    def is_box(self) -> bool:
        return bool((self.labels == 2).any())


def ref_prompt(prompt: Point | Box, frame_size: tuple[int, int], image_size: int, num_frames: int = 1) -> RefPrompt:
    """A user point/box (original pixels) -> the SAM2 S x S frame, as SAM2's own predictor scales coordinates."""
    h, w = frame_size
    prompt.validate(h, w, num_frames)
    sx, sy = image_size / w, image_size / h
    if isinstance(prompt, Point):
        if not prompt.positive:
            raise PromptError("UniPixel's <|ref|> prompts take positive points only")
        coords = torch.tensor([[[prompt.x * sx, prompt.y * sy]]], dtype=torch.float32)
        labels = torch.tensor([[1]], dtype=torch.int32)
    elif isinstance(prompt, Box):
        coords = torch.tensor([[[prompt.x1 * sx, prompt.y1 * sy], [prompt.x2 * sx, prompt.y2 * sy]]],
                              dtype=torch.float32)
        labels = torch.tensor([[2, 3]], dtype=torch.int32)
    else:
        raise PromptError(f"<|ref|> prompts are points or boxes, got {type(prompt).__name__}")
    return RefPrompt(coords, labels, int(prompt.frame))


def mask_to_sam2_frame(mask: np.ndarray | torch.Tensor, image_size: int) -> np.ndarray:
    """bool [H, W] -> bool [S, S] as the official evaluation resizes masks (bilinear, antialiased, > 0)."""
    m = torch.as_tensor(np.asarray(mask, dtype=bool)).to(torch.float32)[None, None]
    m = F.interpolate(m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return (m[0, 0] > 0).numpy()


def ref_prompt_from_mask(prompt: MaskPrompt, kind: str, image_size: int, num_frames: int = 1) -> RefPrompt:
    """A mask -> the `<|ref|>` point or box the official PixelQA evaluation derives from it.

    Point: the pixel farthest from the mask boundary (RITM/SAM2 "error centre", first in raster order on ties);
    box: the tight box of the mask. Both on the mask resized to the S x S SAM2 frame.
    """
    import cv2

    h, w = np.asarray(prompt.mask).shape
    prompt.validate(h, w, num_frames)
    m = mask_to_sam2_frame(prompt.mask, image_size)
    if not m.any():
        raise PromptError(f"mask prompt on frame {prompt.frame} vanishes at {image_size}x{image_size}")
    if kind == "point":
        dist = cv2.distanceTransform(np.pad(m, 1).astype(np.uint8), cv2.DIST_L2, 0)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        coords = torch.tensor([[[float(x), float(y)]]], dtype=torch.float32)
        labels = torch.tensor([[1]], dtype=torch.int32)
    elif kind == "box":
        ys, xs = np.nonzero(m)
        coords = torch.tensor([[[xs.min(), ys.min()], [xs.max(), ys.max()]]], dtype=torch.float32)
        labels = torch.tensor([[2, 3]], dtype=torch.int32)
    else:
        raise PromptError(f"kind must be 'point' or 'box', got {kind!r}")
    return RefPrompt(coords, labels, int(prompt.frame))


def ref_text(obj_id: int) -> str:
    """How an object with a visual prompt is written in the question: `[k] <|ref|>`."""
    return f"[{obj_id}] {REF_TOKEN}"


def mention_tokens(tokenizer) -> dict[str, list]:
    """The token ids a model with `config.region_mentions` reads a region's number by: `open` (`[`, ` [`) and
    `digits` ([token id, value] for every token that is a plain number below 1000), from a `tokenizers.Tokenizer`."""
    vocab = tokenizer.get_vocab()
    opens = sorted(i for t, i in vocab.items() if t in ("[", "\u0120["))
    digits = sorted([i, int(t)] for t, i in vocab.items() if t.isascii() and t.isdigit() and len(t) <= 3
                    and (t == "0" or not t.startswith("0")))
    if not opens or not digits:
        raise PromptError("the tokenizer has no '[' or number tokens: region_mentions cannot read region numbers")
    return {"open": opens, "digits": digits}


def option_tokens(tokenizer) -> dict[str, Any]:
    """The token ids a model with `config.option_links` reads answer options by: `open` (`(`, ` (`), `letters`
    ([token id, index] for A-H), `close` (`)`), `stops` (the tokens that hold a line break, and the chat's turn
    markers: an option's text ends there), `turn` (`<|im_start|>`) and `assistant` (the role name after it)."""
    vocab = tokenizer.get_vocab()
    need = {"(": "(", "\u0120(": None, ")": ")", "<|im_start|>": "<|im_start|>", "assistant": "assistant"}
    missing = [t for t, required in need.items() if required and t not in vocab]
    if missing:
        raise PromptError(f"the tokenizer has no {missing} tokens: option_links cannot read answer options")
    letters = sorted([vocab[c], k] for k, c in enumerate("ABCDEFGH") if c in vocab)
    stops = sorted({i for t, i in vocab.items() if "\u010a" in t} | {vocab["<|im_start|>"]}
                   | ({vocab["<|im_end|>"]} if "<|im_end|>" in vocab else set()))
    return {"open": sorted(vocab[t] for t in ("(", "\u0120(") if t in vocab), "letters": letters,
            "close": [vocab[")"]], "stops": stops, "turn": vocab["<|im_start|>"], "assistant": vocab["assistant"]}


def masks_for_memory(prompts: Sequence[Sequence[MaskPrompt]], num_frames: int, frame_size: tuple[int, int]) -> torch.Tensor:
    """Per object a list of mask prompts -> bool label mask [T, O, H, W] (empty on frames without a prompt)."""
    h, w = frame_size
    out = torch.zeros(num_frames, len(prompts), h, w, dtype=torch.bool)
    for o, obj in enumerate(prompts):
        for p in obj:
            p.validate(h, w, num_frames)
            out[p.frame, o] |= torch.from_numpy(np.asarray(p.mask, dtype=bool))
    return out


def pool_label_mask(label_mask: torch.Tensor, temporal_patch_size: int = 2) -> torch.Tensor:
    """bool [T, O, H, W] -> [ceil(T/2), O, H, W]: pad to even T (repeat last frame), max over frame pairs."""
    t = label_mask.shape[0]
    if t % temporal_patch_size:
        pad = temporal_patch_size - t % temporal_patch_size
        label_mask = torch.cat([label_mask, label_mask[-1:].expand(pad, *label_mask.shape[1:])], 0)
    g = label_mask.shape[0] // temporal_patch_size
    return label_mask.reshape(g, temporal_patch_size, *label_mask.shape[1:]).amax(1)


def refer_mask_from_pooled(pooled: torch.Tensor, grid_thw: torch.Tensor, patch_size: int = 14,
                           merge_size: int = 2) -> torch.Tensor:
    """bool [T/2, O, H, W] -> bool [T/2, O, h, w] on the merged-token grid (raster order).

    Bilinear antialiased resize to the LLM frame size, max-pool over one merged token (28 x 28), > 0.
    """
    _, gh, gw = (int(v) for v in grid_thw.reshape(-1, 3)[0])
    x = pooled.to(torch.float32)
    x = F.interpolate(x, size=(gh * patch_size, gw * patch_size), mode="bilinear", align_corners=False, antialias=True)
    k = patch_size * merge_size
    x = F.max_pool2d(x, kernel_size=k, stride=k)
    return x > 0


def mem_prefix(refer_mask: torch.Tensor, num_frames: int, is_image: bool, object_ids: Sequence[int] | None = None) -> str:
    """The official "highlighted regions" prefix with one `<|mem|>` per (object, non-empty frame pair).

    Objects with no mask at all are left out (they would have no `<|mem|>` feature); their ids are still usable in
    the question text.
    """
    num_objects = refer_mask.shape[1]
    ids = list(object_ids) if object_ids is not None else list(range(num_objects))
    if len(ids) != num_objects:
        raise PromptError(f"{len(ids)} object ids for {num_objects} mask objects")
    if is_image:
        lines = [f"[{ids[o]}]: {MEM_TOKEN}\n" for o in range(num_objects) if refer_mask[:, o].any()]
        return "Here is an image with the following highlighted regions:\n" + "".join(lines)
    lines = []
    for o in range(num_objects):
        groups = [g for g in range(refer_mask.shape[0]) if refer_mask[g, o].any()]
        if not groups:
            continue
        parts = " ".join(f"<{2 * g + 1}>-<{2 * g + 2}> {MEM_TOKEN}" for g in groups)
        lines.append(f"[{ids[o]}]: {parts}\n")
    return (f"Here is a video with {num_frames} frames denoted as <1> to <{num_frames}>. "
            "The highlighted regions are as follows:\n" + "".join(lines))


# ----------------------------------------------------------------------------------------------- chat


# ----------------------------------------------------------------------------------------------- processor


@dataclass
class UniPixelInputs:
    """Everything the model needs for one query (batch of one), plus the intermediate images for inspection."""

    input_ids: torch.Tensor  # int64 [L]
    attention_mask: torch.Tensor  # int64 [L]
    pixel_values_videos: torch.Tensor  # float32 [N, 3*tp*p*p]
    video_grid_thw: torch.Tensor  # int64 [1, 3]
    second_per_grid_ts: torch.Tensor  # float32 [1]
    frame_size: tuple[int, int]
    sam2_frames: torch.Tensor | None  # float32 [T, 3, S, S] (un-padded frames)
    llm_frames: np.ndarray  # uint8 [T_even, h, w, 3]
    chat_text: str
    num_frames: int
    ref_prompts: list[RefPrompt] = field(default_factory=list)
    refer_mask: torch.Tensor | None = None  # bool [T/2, O, h, w]
    # Vision tower outputs of these frames from an earlier query (`UniPixelOutput.vision`): skips re-encoding.
    vision: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    # With `llm_object_view`: the first frame's proposals from an earlier query (`UniPixelOutput.objects`), or the
    # SAM2 features of `sam2_frames` when already encoded (`Sam2...encode_frames`): skip computing them again.
    objects: tuple[torch.Tensor, torch.Tensor] | None = None
    sam2_features: Any = None
    # With `region_own_frame`, where `sam2_frames` were thinned (training): each frame pair's first frame at SAM2 size,
    # float32 [T/2, 3, S, S], for the descriptors of regions on later frame pairs.
    region_frames: torch.Tensor | None = None


class UniPixelProcessor:
    """Tokenizer + frame processing for UniPixel, built from the files of a checkpoint folder."""

    def __init__(self, tokenizer, sam2_image_size: int, patch_size: int = 14, merge_size: int = 2,
                 temporal_patch_size: int = 2, image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
                 image_std: Sequence[float] = OPENAI_CLIP_STD, fps: float = DEFAULT_FPS,
                 frame_min_pixels: int | None = None, frame_max_pixels: int | None = None):
        self.tokenizer = tokenizer
        # A checkpoint's own per-frame pixel budget (pixelwise tiny models; absent from official checkpoints): when
        # set it replaces whatever budget the messages or the caller ask for.
        self.frame_min_pixels = frame_min_pixels
        self.frame_max_pixels = frame_max_pixels
        self.sam2_image_size = sam2_image_size
        self.patch_size = patch_size
        self.merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.fps = fps
        for tok in (REF_TOKEN, SEG_TOKEN, MEM_TOKEN, VIDEO_PAD, "<|im_end|>"):
            if self.tokenizer.token_to_id(tok) is None:
                raise CheckpointError(f"tokenizer has no {tok} token")

    @classmethod
    def from_pretrained(cls, path: str | Path, sam2_image_size: int | None = None) -> UniPixelProcessor:
        path = Path(path)
        tok_file = path / "tokenizer.json"
        if not tok_file.exists():
            raise CheckpointError(f"{path}: no tokenizer.json (the fast tokenizer file is required)")
        tokenizer = load_tokenizer(tok_file)
        pre: dict[str, Any] = {}
        # Frame lists go through the *video* processor officially; its config wins when both are present.
        for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
            if (path / name).exists():
                part = read_json(path / name, CheckpointError)
                if not isinstance(part, dict):
                    raise CheckpointError(f"{path / name}: must be a JSON object, got {type(part).__name__}")
                pre.update(part)
        if sam2_image_size is None:
            cfg = read_json(path / "config.json", CheckpointError)
            sam2_image_size = cfg.get("sam2_image_size", 1024) if isinstance(cfg, dict) else None
        try:
            sizes = {"sam2_image_size": int(sam2_image_size), "patch_size": int(pre.get("patch_size", 14)),
                     "merge_size": int(pre.get("merge_size", 2)),
                     "temporal_patch_size": int(pre.get("temporal_patch_size", 2))}
            for key in ("frame_min_pixels", "frame_max_pixels"):
                if pre.get(key) is not None:
                    sizes[key] = int(pre[key])
        except (TypeError, ValueError, OverflowError) as e:
            raise CheckpointError(f"{path}: preprocessor sizes must be integers ({type(e).__name__}: {e})") from None
        bad = [k for k, v in sizes.items() if not 0 < v <= (1 << 30)]
        if bad:
            raise CheckpointError(f"{path}: preprocessor value {bad[0]}={sizes[bad[0]]} is out of range")
        return cls(tokenizer, image_mean=pre.get("image_mean", OPENAI_CLIP_MEAN),
                   image_std=pre.get("image_std", OPENAI_CLIP_STD), **sizes)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        atomic_write_text(path / "tokenizer.json", self.tokenizer.to_str())
        pre = {
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2_5_VLProcessor",
            "patch_size": self.patch_size,
            "merge_size": self.merge_size,
            "temporal_patch_size": self.temporal_patch_size,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
        }
        if self.frame_min_pixels is not None:
            pre["frame_min_pixels"] = self.frame_min_pixels
        if self.frame_max_pixels is not None:
            pre["frame_max_pixels"] = self.frame_max_pixels
        atomic_write_text(path / "preprocessor_config.json", json.dumps(pre, indent=2) + "\n")

    # ------------------------------------------------------------------ tokens

    def token_id(self, token: str) -> int:
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise CheckpointError(f"tokenizer has no {token} token")
        return int(tid)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def decode_answer(self, ids: Sequence[int], stop_token_ids: Sequence[int] = ()) -> tuple[str, list[tuple[int, int]]]:
        """Generated ids -> (answer text without a final stop token, character span of every `<|seg|>`)."""
        ids = [int(i) for i in ids]
        if ids and ids[-1] in {int(s) for s in stop_token_ids}:
            ids = ids[:-1]
        seg = self.token_id(SEG_TOKEN)
        text, spans, chunk = "", [], []
        for i in ids + [None]:
            if i is None or i == seg:
                text += self.decode(chunk)
                chunk = []
                if i is not None:
                    spans.append((len(text), len(text) + len(SEG_TOKEN)))
                    text += SEG_TOKEN
            else:
                chunk.append(i)
        return text, spans

    def build_result(self, prediction: Any, frame_indices: Sequence[int], frame_size: tuple[int, int],
                     stop_token_ids: Sequence[int] = ()) -> Any:
        """A model `Prediction` -> `pixelwise.Result`: answer text, one `SegObject` per `<|seg|>` of the answer.

        An object written `[k] <|seg|>` gets id k (the official multi-object answer format), otherwise its order.
        Objects segmented from `<|seg|>` tokens of the prompt have no span in the answer.
        """

        answer, spans = self.decode_answer(prediction.generated_ids.tolist(), stop_token_ids)
        seg = prediction.segmentation
        objects = []
        if seg is not None:
            answer_spans = iter(spans)
            for k, token_index in enumerate(prediction.seg_token_index):
                span = next(answer_spans) if token_index >= 0 else None
                mentioned = None if span is None else seg_object_id(answer, span)
                obj_id = k if mentioned is None else mentioned
                score = None
                if getattr(seg.sam2, "object_score_logits", None) is not None:
                    score = float(torch.sigmoid(seg.sam2.object_score_logits[k].max()))
                objects.append(SegObject(id=obj_id, masks=seg.masks[k].cpu().numpy(), span=span, score=score))
        size = (int(frame_size[0]), int(frame_size[1]))
        return Result(answer=answer, objects=objects, frame_indices=list(frame_indices), size=size)

    def expand_vision(self, text: str, grid_thw: torch.Tensor) -> str:
        """Replace the single `<|video_pad|>` with one copy per merged visual token."""
        if text.count(VIDEO_PAD) != 1:
            raise PromptError(f"the chat text must hold exactly one visual placeholder, found {text.count(VIDEO_PAD)}")
        n = int(grid_thw.prod()) // self.merge_size**2
        return text.replace(VIDEO_PAD, VIDEO_PAD * n)

    # ------------------------------------------------------------------ frames

    def process_frames(self, frames: np.ndarray, min_pixels: int | None = None, max_pixels: int | None = None,
                       ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """uint8 [T, H, W, 3] -> (llm_frames, pixel_values_videos, video_grid_thw)."""
        frames = _check_frames(frames)
        if self.frame_min_pixels is not None:
            min_pixels = self.frame_min_pixels
        if self.frame_max_pixels is not None:
            max_pixels = self.frame_max_pixels
        min_pixels = DEFAULT_MIN_PIXELS if min_pixels is None else min_pixels
        max_pixels = default_max_pixels(frames.shape[0]) if max_pixels is None else max_pixels
        llm = resize_for_llm(frames, min_pixels, max_pixels, self.temporal_patch_size,
                             factor=self.patch_size * self.merge_size)
        pv, thw = patchify(llm, self.patch_size, self.merge_size, self.temporal_patch_size, self.image_mean,
                           self.image_std)
        return llm, pv, thw

    def sam2_frames(self, frames: np.ndarray) -> torch.Tensor:
        return sam2_transform(frames, self.sam2_image_size)

    # ------------------------------------------------------------------ all together

    def __call__(self, frames: np.ndarray, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool | None = None,
                 assistant_prefix: str = "", min_pixels: int | None = None, max_pixels: int | None = None,
                 fps: float | None = None, with_sam2: bool = True) -> UniPixelInputs:
        """Frames + chat messages (one visual item, official format) -> model inputs.

        `min_pixels`/`max_pixels` default to the values of the visual item in `messages`, then to the official
        budgets. `add_generation_prompt` defaults to True unless the last message is the assistant's (teacher forcing).
        `fps` (default 2.0, the official value for frame lists) sets `second_per_grid_ts` = temporal_patch_size / fps.
        """
        frames = _check_frames(frames)
        item = _visual_item(messages)
        if item is not None:
            min_pixels = item.get("min_pixels", min_pixels) if min_pixels is None else min_pixels
            max_pixels = item.get("max_pixels", max_pixels) if max_pixels is None else max_pixels
        llm, pv, thw = self.process_frames(frames, min_pixels, max_pixels)
        chat, input_ids = self.tokenize_chat(messages, thw, add_generation_prompt, assistant_prefix)
        return UniPixelInputs(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            pixel_values_videos=pv,
            video_grid_thw=thw,
            second_per_grid_ts=torch.tensor([self.temporal_patch_size / (fps or self.fps)], dtype=torch.float32),
            frame_size=(int(frames.shape[1]), int(frames.shape[2])),
            sam2_frames=self.sam2_frames(frames) if with_sam2 else None,
            llm_frames=llm,
            chat_text=chat,
            num_frames=int(frames.shape[0]),
        )

    def tokenize_chat(self, messages: Sequence[dict[str, Any]], grid_thw: torch.Tensor,
                      add_generation_prompt: bool | None = None, assistant_prefix: str = "",
                      ) -> tuple[str, torch.Tensor]:
        """Chat messages -> (chat text, input ids [L] with the visual placeholder expanded for `grid_thw`)."""
        if add_generation_prompt is None:
            add_generation_prompt = messages[-1].get("role") != "assistant"
        chat = render_chat(messages, add_generation_prompt=add_generation_prompt, assistant_prefix=assistant_prefix)
        return chat, torch.tensor(self.encode(self.expand_vision(chat, grid_thw)), dtype=torch.int64)

    def with_messages(self, inputs: UniPixelInputs, messages: Sequence[dict[str, Any]], *,
                      add_generation_prompt: bool | None = None, assistant_prefix: str = "") -> UniPixelInputs:
        """The same processed frames with other chat messages (a chat turn, a second round on one clip).

        Visual prompts are not carried over: set `ref_prompts` / `refer_mask` for the new text.
        """
        chat, input_ids = self.tokenize_chat(messages, inputs.video_grid_thw, add_generation_prompt, assistant_prefix)
        return replace(inputs, input_ids=input_ids, attention_mask=torch.ones_like(input_ids), chat_text=chat,
                       ref_prompts=[], refer_mask=None)

    def memory_inputs(self, label_mask: torch.Tensor, grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bool [T, O, H, W] object masks -> (pooled [T/2, O, H, W], refer_mask [T/2, O, h, w])."""
        pooled = pool_label_mask(label_mask, self.temporal_patch_size)
        return pooled, refer_mask_from_pooled(pooled, grid_thw, self.patch_size, self.merge_size)


def seg_object_id(answer: str, span: tuple[int, int]) -> int | None:
    """The id k of an answer's `[k] <|seg|>` (the official multi-object format), or None for a plain `<|seg|>`."""
    m = re.search(r"\[(\d+)\]\s*$", answer[: span[0]])
    return int(m.group(1)) if m else None


def _visual_item(messages: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    found = None
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            for item in content:
                if item.get("type") in ("image", "video") or "video" in item or "image" in item:
                    if found is not None:
                        raise PromptError("UniPixel takes one image or video per query")
                    found = item
    return found
