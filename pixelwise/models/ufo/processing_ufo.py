"""UFO processing: `<MASK>` answers, boxes as text, and the packed layout of parallel grid decoding.

* Answers: each dataset `[SEG]` becomes `num_mask_tokens` consecutive `<MASK>` tokens; boxes stay text,
  `<box>x1,y1,x2,y2</box>` on the `box_bins` integer grid (exclusive right/bottom edge, as PixelWorld writes them).
* Parallel decoding ("detect every star"): the prompt (question + image) is followed by M sub-sequences, one per grid
  point, each starting with a `<|local|>` token. Every sub-sequence sees the prompt and itself only (causal inside),
  and all local tokens share one position id (right after the prompt); the answer of sub-sequence k is
  `<box>...</box><MASK>x16<|im_end|>` for an object, or `<|im_end|>` for background. Ground-truth objects are
  assigned to grid points by Hungarian matching on the L1 distance between box centre and grid point, each object
  repeated `grid_repeat` times so that several grid points learn it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from pixelwise.core.results import Result, SegObject
from pixelwise.models.ufo.configuration_ufo import UFOConfig
from pixelwise.modules.vl_processing import IM_END, Encoded, VLProcessor

MASK_TOKEN, BOX_START, BOX_END, LOCAL_TOKEN = "<MASK>", "<box>", "</box>", "<|local|>"
UFO_TOKENS = (MASK_TOKEN, BOX_START, BOX_END, LOCAL_TOKEN)
DATASET_SEG = "[SEG]"
DATASET_BOX_GRID = 1000  # the grid of the datasets' text boxes (PixelWorld's `BOX_GRID`; a test keeps them equal)
_BOX = re.compile(r"<box>\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*</box>")
_PARALLEL = re.compile(r"^\s*(please\s+)?(detect|output a box for each|locate (all|every)|box (all|every))\b",
                       re.IGNORECASE)


def is_parallel_query(question: str) -> bool:
    """Questions answered by parallel grid decoding: detection of "all objects of a kind" ("Detect every star.").
    Multi-target *segmentation* questions ("Segment all green objects.") are answered autoregressively, one
    `<MASK>` group per target, as they are trained."""
    return bool(_PARALLEL.match(question))


def grid_points(k: int) -> torch.Tensor:
    """[k*k, 2] (x, y) centres of a k x k grid in [0, 1], row-major."""
    c = (torch.arange(k, dtype=torch.float32) + 0.5) / k
    y, x = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], -1)


def assign_to_grid(boxes: np.ndarray, size: tuple[int, int], k: int, repeat: int) -> list[int]:
    """Boxes [G, 4] pixel xyxy -> for each grid point the index of its object, or -1 (background).

    Hungarian matching, cost = L1(box centre, grid point) in normalised coordinates, objects repeated `repeat` times.
    """
    from scipy.optimize import linear_sum_assignment

    out = [-1] * (k * k)
    if len(boxes) == 0:
        return out
    h, w = size
    b = np.asarray(boxes, dtype=np.float64)
    centres = np.stack([(b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h], -1)
    centres = np.repeat(centres, repeat, axis=0)
    owner = np.repeat(np.arange(len(b)), repeat)
    cost = np.abs(centres[:, None, :] - grid_points(k).numpy()[None].astype(np.float64)).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    for r, c in zip(rows, cols):
        out[int(c)] = int(owner[r])
    return out


class UFOProcessor(VLProcessor):
    special_tokens = UFO_TOKENS

    def __init__(self, tokenizer, *args, num_mask_tokens: int = 16, box_bins: int = 1000, **kwargs):
        super().__init__(tokenizer, *args, **kwargs)
        self.num_mask_tokens = int(num_mask_tokens)
        self.box_bins = int(box_bins)
        self.mask_id = self.token_id(MASK_TOKEN)
        self.box_start_id = self.token_id(BOX_START)
        self.local_id = self.token_id(LOCAL_TOKEN)

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        cfg = UFOConfig.from_pretrained(path)
        return super().from_pretrained(path, num_mask_tokens=cfg.num_mask_tokens, box_bins=cfg.box_bins, **kwargs)

    # ------------------------------------------------------------------ text

    @property
    def mask_group(self) -> str:
        return MASK_TOKEN * self.num_mask_tokens

    def format_answer(self, answer: str) -> str:
        """A dataset answer -> this model's: `[SEG]` -> the `<MASK>` group, text boxes from the dataset's grid
        (`DATASET_BOX_GRID`) to `box_bins` (within one bin of `box_text` of the same pixels: the dataset's numbers
        are rounded already)."""
        answer = answer.replace(DATASET_SEG, self.mask_group)
        if self.box_bins == DATASET_BOX_GRID:
            return answer
        return _BOX.sub(lambda m: "{}{},{},{},{}{}".format(
            BOX_START, *(round(int(v) * self.box_bins / DATASET_BOX_GRID) for v in m.groups()), BOX_END), answer)

    def box_text(self, box: Sequence[float], size: tuple[int, int]) -> str:
        """Pixel xyxy -> `<box>x1,y1,x2,y2</box>` on the integer grid."""
        h, w = size
        x1, y1, x2, y2 = box
        g = [round(x1 * self.box_bins / w), round(y1 * self.box_bins / h), round(x2 * self.box_bins / w),
             round(y2 * self.box_bins / h)]
        return "{}{},{},{},{}{}".format(BOX_START, *g, BOX_END)

    def parse_boxes(self, text: str, size: tuple[int, int]) -> list[tuple[tuple[float, float, float, float],
                                                                          tuple[int, int]]]:
        """Every `<box>` of a text -> ((x1, y1, x2, y2) in pixels, character span), clamped to the grid, corners
        ordered."""
        h, w = size
        out = []
        for m in _BOX.finditer(text):
            g = [min(max(int(v), 0), self.box_bins) for v in m.groups()]
            x1, x2 = sorted((g[0], g[2]))  # a model may write the corners in either order
            y1, y2 = sorted((g[1], g[3]))
            out.append(((x1 * w / self.box_bins, y1 * h / self.box_bins, x2 * w / self.box_bins,
                         y2 * h / self.box_bins), (m.start(), m.end())))
        return out

    def segment_question(self, text: str) -> str:
        t = text.strip()
        if t.endswith(("?", ".")) or t.lower().startswith(("segment", "please", "find", "detect")):
            return t
        return f"Please segment {t}."

    # ------------------------------------------------------------------ packed parallel decoding

    def pack(self, prefix: Encoded, answers: Sequence[Sequence[int]], points: torch.Tensor,
             supervise: bool = False) -> Encoded:
        """Prompt + one sub-sequence per grid point (`<|local|>` + answer ids) -> a packed `Encoded`.

        `points` [M, 2] are (x, y) in [0, 1]. With `supervise`, every answer token (and the `<|im_end|>` the caller
        put at its end) is a training target; the local token never is.
        """
        p = len(prefix.input_ids)
        ids = list(prefix.input_ids.tolist())
        sup = [False] * p
        pos = [prefix.position_ids]
        start_pos = int(prefix.position_ids.max()) + 1
        spans, locals_ = [], []
        for ans in answers:
            s = len(ids)
            ids += [self.local_id, *[int(a) for a in ans]]
            sup += [False] + [supervise] * len(ans)
            n = 1 + len(ans)
            pos.append((torch.arange(n, dtype=torch.int64) + start_pos).view(1, -1).expand(3, -1))
            spans.append((s, s + n))
            locals_.append(s)
        length = len(ids)
        att = torch.zeros(length, length, dtype=torch.bool)
        att[:p, :p] = torch.ones(p, p, dtype=torch.bool).tril()
        s0, e0 = prefix.image_span
        att[s0:e0, s0:e0] = True
        for s, e in spans:
            att[s:e, :p] = True
            att[s:e, s:e] = torch.ones(e - s, e - s, dtype=torch.bool).tril()
        return Encoded(torch.tensor(ids, dtype=torch.int64), torch.tensor(sup), torch.cat(pos, 1),
                       prefix.pixel_values, prefix.grid_thw, prefix.image_span, prefix.frame_size, p,
                       attention=att, local_positions=locals_, local_points=points.to(torch.float32),
                       subsequences=spans)

    def grid_answers(self, boxes: np.ndarray, size: tuple[int, int], k: int, repeat: int, limit: int,
                     rng: np.random.Generator) -> tuple[list[list[int]], torch.Tensor, list[int]]:
        """Training sub-sequences for a detection sample: (answer ids per chosen grid point, their points [M, 2],
        object index per chosen point, -1 for background). Positives first, then random background points."""
        owner = assign_to_grid(boxes, size, k, repeat)
        pts = grid_points(k)
        pos = [i for i, o in enumerate(owner) if o >= 0]
        neg = [i for i, o in enumerate(owner) if o < 0]
        rng.shuffle(neg)
        chosen = (pos + neg)[:max(limit, len(pos))]
        answers, owners = [], []
        for i in chosen:
            o = owner[i]
            if o >= 0:
                text = self.box_text(boxes[o], size) + self.mask_group
                answers.append(self.encode_text(text) + [self.im_end_id])
            else:
                answers.append([self.im_end_id])
            owners.append(o)
        return answers, pts[chosen], owners

    # ------------------------------------------------------------------ results

    def answer_text(self, ids: Sequence[int]) -> str:
        """Generated ids -> text with each `<MASK>` group shown as one `[SEG]`."""
        ids = [int(i) for i in ids]
        if ids and ids[-1] == self.im_end_id:
            ids = ids[:-1]
        text = self.decode(ids).replace(IM_END, "")
        return text.replace(self.mask_group, DATASET_SEG).replace(MASK_TOKEN, "").strip()

    def build_result(self, generated_ids: Sequence[int], mask_logits: torch.Tensor, frame_size: tuple[int, int],
                     scores: Sequence[float] = ()) -> Result:
        """Autoregressive answer -> `Result`: one object per `<MASK>` group (span = its `[SEG]`) and one per `<box>`
        without a mask after it (span = the box text, `box` in pixels, empty mask)."""
        text = self.answer_text(generated_ids)
        h, w = frame_size
        seg_spans = [(m.start(), m.end()) for m in re.finditer(re.escape(DATASET_SEG), text)]
        masks = (mask_logits > 0).cpu().numpy() if len(mask_logits) else np.zeros((0, h, w), bool)
        objects: list[SegObject] = []
        boxes = self.parse_boxes(text, frame_size)
        for k in range(masks.shape[0]):
            span = seg_spans[k] if k < len(seg_spans) else None
            box = None
            for b, bspan in boxes:  # a box written right before the mask group belongs to it
                if span is not None and 0 <= span[0] - bspan[1] <= 1:
                    box = b
            score = float(scores[k]) if k < len(scores) else None
            objects.append(SegObject(id=k, masks=masks[k][None], span=span, score=score, box=box))
        used = {o.box for o in objects if o.box is not None}
        for b, bspan in boxes:
            if b not in used:
                objects.append(SegObject(id=len(objects), masks=np.zeros((1, h, w), bool), span=bspan, box=b))
        return Result(answer=text, objects=objects, frame_indices=[0], size=(int(h), int(w)))
