"""Object keys (pixelwise's tiny models only, `config.seg_key_objects`): retrieval keys that describe the object SAM2
segments when clicked at each grid cell.

Measured on the tiny models (docs/models/unipixel-tiny.md, session 6): neither SAM2's frozen image embedding nor the
vision tower's tokens tell the shape of the object under a cell (linear probes 0.19 and 0.18, chance 0.13), and the
tower did not learn it in 1,000 steps of a direct per-token shape loss either; colour they do tell (0.64, 0.98). A
silhouette does tell shape. So every cell proposes an object: SAM2 is clicked at the cell's centre (all cells as one
batch, no gradient), and the proposal's mask is described by its silhouette (a small CNN on the mask cropped around
its centroid, so the shape is seen at one scale), what the visual tokens and SAM2's fine features hold inside it
(colour, texture), and its geometry (centroid, spread, area, SAM2's object score). A small transformer over the cells
then lets each key see the others (relations, ordinals). The keys are added to the retrieval key MLP's input through
a zero-initialised projection, so switching the option on leaves a trained model's clicks unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GEOMETRY_FEATURES = 4 * 4 + 4  # sin/cos of the centroid at 4 frequencies, spread x/y, log area, object score
MOTION_FRAMES = 4  # `seg_key_motion`: the proposals are tracked to 3 later frames spread over the clip
MOTION_FEATURES = 4 * (MOTION_FRAMES - 1)  # per later frame: centroid shift x/y, log area ratio, object score
PIXEL_FEATURES = 4 * 3  # `seg_key_pixels`: per colour channel inside the mask: mean, deviation, mean |d/dx|, |d/dy|
TEXT_LAYERS = 2  # `seg_ground_words`: the layers of the head's own encoder of the question's words
VIEW_CROP = 16  # `seg_ground_eyes`: each proposal's window, resampled to VIEW_CROP x VIEW_CROP
GEOMETRY_STATS = 6  # centroid x, y, spread x, y, log area share, object score (`proposal_geometry`)
VIEW_STATS = PIXEL_FEATURES + GEOMETRY_STATS  # pixel statistics + the geometry
GEOMETRY_FREQUENCIES = 4  # `seg_ground_geometry`: the centroid also as sin/cos at this many octaves
HEAD_GEOMETRY = GEOMETRY_STATS + 4 * GEOMETRY_FREQUENCIES  # what a head with `seg_ground_geometry` reads per cell


class ObjectKeys(nn.Module):
    """Proposal masks [N, S, S] (logits) + the frame's features -> key additions [N, key_dim] and descriptors
    [N, width] (the latter for the training loss that makes each descriptor name its object)."""

    def __init__(self, visual_dim: int, high_res_dim: int, key_dim: int, width: int, word_dim: int,
                 crop: int = 16, layers: int = 2, heads: int = 4, motion: bool = False, pixels: bool = False):
        super().__init__()
        self.crop = crop
        self.silhouette = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (crop // 4) ** 2, width),
        )
        self.look = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width))
        self.texture = nn.Sequential(nn.LayerNorm(high_res_dim), nn.Linear(high_res_dim, width))
        self.geometry = nn.Linear(GEOMETRY_FEATURES, width)
        if motion:  # where each proposal goes later in the clip; zero at init (a trained model's keys unchanged)
            self.motion = nn.Linear(MOTION_FEATURES, width)
            nn.init.zeros_(self.motion.weight)
            nn.init.zeros_(self.motion.bias)
        if pixels:  # the frame's own pixel statistics inside the mask (texture); zero at init
            self.pixels = nn.Linear(PIXEL_FEATURES, width)
            nn.init.zeros_(self.pixels.weight)
            nn.init.zeros_(self.pixels.bias)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.context = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.to_key = nn.Linear(width, key_dim)
        nn.init.zeros_(self.to_key.weight)
        nn.init.zeros_(self.to_key.bias)
        self.to_words = nn.Linear(width, word_dim)

    def forward(self, mask_logits: torch.Tensor, object_scores: torch.Tensor, visual: torch.Tensor,
                high_res: torch.Tensor, motion: torch.Tensor | None = None, frame: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """mask_logits [N, S, S], object_scores [N], visual [Dv, h, w], high_res [Dh, S', S'], motion [N,
        MOTION_FEATURES] (`motion_features`; with `motion=True`), frame [3, F, F] (the SAM2 input; with
        `pixels=True`) -> (key additions [N, key_dim], descriptors [N, width])."""
        s = mask_logits.shape[-1]
        p = torch.sigmoid(mask_logits.float()).to(visual.dtype)  # [N, S, S]
        crop, (cx, cy, sx, sy, mass) = silhouettes(p, self.crop)
        w = p / mass[:, None, None]
        grid = lambda x: x if x.shape[-2:] == (s, s) else F.interpolate(  # noqa: E731
            x[None], size=(s, s), mode="bilinear", align_corners=False)[0]
        look = torch.einsum("nhw,dhw->nd", w, grid(visual))
        texture = torch.einsum("nhw,dhw->nd", w, grid(high_res))
        freqs = math.pi * 2.0 ** torch.arange(4, device=p.device, dtype=p.dtype)
        angles = torch.cat([cx[:, None] * freqs, cy[:, None] * freqs], -1)
        geometry = torch.cat([angles.sin(), angles.cos(), sx[:, None] * 4, sy[:, None] * 4,
                              (mass / (s * s)).log()[:, None] / 4, object_scores.to(p.dtype)[:, None] / 10], -1)
        desc = self.silhouette(crop) + self.look(look) + self.texture(texture) + self.geometry(geometry)
        if hasattr(self, "motion"):
            if motion is None:
                raise ValueError("these object keys read the proposals' motion: pass motion_features(...)")
            desc = desc + self.motion(motion.to(desc.dtype))
        if hasattr(self, "pixels"):
            if frame is None:
                raise ValueError("these object keys read the frame's pixels: pass the SAM2 input frame")
            desc = desc + self.pixels(pixel_statistics(p, frame).to(desc.dtype))
        desc = F.gelu(desc)
        desc = self.context(desc[None])[0]
        return self.to_key(desc), desc


class RetrievalRerank(nn.Module):
    """`config.seg_rerank`: retrieval logits [O, N] refined by a small transformer over [query, cell 1 .. cell N] per
    `<|seg|>` query, each cell its key, its key times the query (which dimensions match) and its score. Zero at init:
    the refined logits equal the given ones until training moves the output layer."""

    def __init__(self, dim: int, layers: int, heads: int = 4):
        super().__init__()
        self.score = nn.Linear(1, dim)
        self.match = nn.Linear(dim, dim)
        self.query = nn.Linear(dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """query [O, k], keys [N, k], logits [O, N] -> refined logits [O, N]."""
        cells = keys[None] + self.match(query[:, None] * keys[None]) + self.score(logits[..., None])  # [O, N, k]
        seq = torch.cat([self.query(query)[:, None], cells], 1)
        return logits + self.out(self.norm(self.blocks(seq)[:, 1:]))[..., 0]


class GroundingHead(nn.Module):
    """`config.seg_ground`: retrieval logits [O, N] refined by a transformer over the `<|seg|>` state and every cell,
    each cell seen as its key, its object descriptor, its learned position, its match with a query of the state and
    its score. Unlike `RetrievalRerank` it reads the LLM's full state (not the 64-dimensional query) and the
    descriptors (not only the keys made of them), and it is meant to be trained on its own on cached inputs
    (`pixelwise.recipes.ground_head`, thousands of examples a minute) before any joint training. Zero at init: the
    refined logits equal the given ones until the output layer moves."""

    def __init__(self, state_dim: int, key_dim: int, desc_dim: int, cells: int, width: int = 96, layers: int = 3,
                 heads: int = 4, dropout: float = 0.1, eyes: bool = False, words: int = 0, vocab: int = 0,
                 geometry: bool = False):
        super().__init__()
        if geometry:  # `seg_ground_geometry`: where each cell's proposal is and how large, as numbers
            self.geometry = nn.Linear(HEAD_GEOMETRY, width)
        if words:  # `seg_ground_words`: the question's tokens, embedded and encoded here, beside the cells
            if vocab < 1:
                raise ValueError("a grounding head that reads words needs the vocabulary size")
            self.word = nn.Embedding(vocab + 1, width, padding_idx=0)  # id + 1; 0 pads
            self.word_pos = nn.Parameter(torch.randn(words, width) * 0.02)
            text = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=dropout, activation="gelu",
                                              batch_first=True, norm_first=True)
            self.text = nn.TransformerEncoder(text, TEXT_LAYERS, enable_nested_tensor=False)
        if eyes:  # `seg_ground_eyes`: each cell's proposal seen at the frame's resolution; zero at init
            self.eyes = CellEyes(width)
            self.eyes_in = nn.Linear(width, width)
            nn.init.zeros_(self.eyes_in.weight)
            nn.init.zeros_(self.eyes_in.bias)
        self.state = nn.Sequential(nn.LayerNorm(state_dim), nn.Linear(state_dim, width))
        self.query = nn.Sequential(nn.LayerNorm(state_dim), nn.Linear(state_dim, key_dim))
        self.key = nn.Linear(key_dim, width)
        self.desc = nn.Linear(desc_dim, width)
        self.match = nn.Linear(key_dim, width)
        self.score = nn.Linear(1, width)
        self.pos = nn.Parameter(torch.randn(cells, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, states: torch.Tensor, keys: torch.Tensor, desc: torch.Tensor, logits: torch.Tensor,
                views: tuple[torch.Tensor, torch.Tensor] | None = None, with_eyes: bool = False,
                words: torch.Tensor | None = None, geometry: torch.Tensor | None = None):
        """states [O, D], keys [N, k] or [O, N, k] (one frame's cells, or one set per state), desc likewise [.., N,
        w], logits [O, N] -> refined logits [O, N]. `views`: `cell_views(...)` of the same cells (crops [.., N, 4,
        c, c], stats [.., N, VIEW_STATS]), needed with `eyes`; `with_eyes` also returns what the eyes saw [.., N,
        width] (for a training loss that makes them name each cell's object). `words`: token ids [O, L] of each
        state's question (-1 pads; `UniPixelModel.seg_words`), needed by a head that reads words. `geometry`:
        `proposal_geometry` of the cells [N, GEOMETRY_STATS] or [O, N, GEOMETRY_STATS], needed by a head with
        `seg_ground_geometry`."""
        if keys.dim() == 2:
            keys, desc = keys.expand(states.shape[0], -1, -1), desc.expand(states.shape[0], -1, -1)
        dtype = self.out.weight.dtype
        states, keys, desc = states.to(dtype), keys.to(dtype), desc.to(dtype)
        q = self.state(states)
        cells = (self.key(keys) + self.desc(desc) + self.score(logits.to(dtype)[..., None] / 4) + self.pos[None]
                 + q[:, None] + self.match(self.query(states)[:, None] * keys))
        if hasattr(self, "geometry"):
            if geometry is None:
                raise ValueError("this grounding head reads where each proposal is: pass geometry=proposal_geometry(...)")
            cells = cells + self.geometry(geometry_features(geometry.to(dtype)))
        seen = None
        if hasattr(self, "eyes"):
            if views is None:
                raise ValueError("this grounding head looks at each cell's proposal: pass views=cell_views(...)")
            seen = self.eyes(views[0].to(dtype), views[1].to(dtype))
            cells = cells + self.eyes_in(seen)
        if hasattr(self, "word"):
            if words is None:
                raise ValueError("this grounding head reads the question's words: pass words=model.seg_words(...)")
            if words.shape[-1] > len(self.word_pos):
                raise ValueError(f"{words.shape[-1]} words for a head that reads at most {len(self.word_pos)}")
            pad = words < 0
            pad[:, 0] &= ~pad.all(-1)  # a question with no words: attend to the first (empty) slot, not to nothing
            said = self.word(words.clamp(min=-1) + 1) + self.word_pos[None, :words.shape[-1]]
            said = self.text(said, src_key_padding_mask=pad)
            seq = torch.cat([q[:, None], said, cells], 1)
            mask = torch.cat([pad.new_zeros(len(q), 1), pad, pad.new_zeros(cells.shape[:2])], 1)
            out = self.blocks(seq, src_key_padding_mask=mask)[:, 1 + words.shape[-1]:]
        else:
            out = self.blocks(torch.cat([q[:, None], cells], 1))[:, 1:]
        refined = logits + self.out(self.norm(out))[..., 0].to(logits.dtype)
        return (refined, seen) if with_eyes else refined


class CellEyes(nn.Module):
    """`config.seg_ground_eyes`: what each cell's proposal looks like at the frame's own resolution, as a vector. The
    object descriptors (`ObjectKeys`) see a proposal through its 32 x 32 mask (a PixelWorld object of ~300 pixels is
    ~4 x 4 cells of it) and mean-pooled features: session 16 measured that a classifier on such silhouettes tells a
    cell's shape 0.2-0.3 of the time (9 shapes) and texture 0.85. Here a small CNN reads the frame's pixels and the
    mask in a window around the proposal (`cell_views`), beside its pixel statistics and geometry."""

    def __init__(self, width: int):
        super().__init__()
        self.look = nn.Sequential(
            nn.Conv2d(4, 16, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (VIEW_CROP // 4) ** 2, width),
        )
        self.stats = nn.Linear(VIEW_STATS, width)
        self.mix = nn.Sequential(nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, crops: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """crops [.., N, 4, c, c] (mask + RGB), stats [.., N, VIEW_STATS] -> [.., N, width]."""
        lead = crops.shape[:-3]
        look = self.look(crops.reshape(-1, *crops.shape[-3:])).reshape(*lead, -1)
        return self.mix(look + self.stats(stats))


def cell_views(mask_logits: torch.Tensor, scores: torch.Tensor, pixels: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposal masks [N, S, S] (logits), their object scores [N] and the frame [3, F, F] (as SAM2 encoded it) ->
    (crops [N, 4, VIEW_CROP, VIEW_CROP]: the mask and the frame's pixels in a window 2.5 spreads wide each way
    around the proposal's centroid; stats [N, VIEW_STATS]: `pixel_statistics` and the geometry)."""
    p = torch.sigmoid(mask_logits.float())
    frame = pixels.float()
    m = moments(p)
    sample = _windows(*m[:4], p.shape[-1], VIEW_CROP)  # one window per proposal, for its mask and pixels
    sil = F.grid_sample(p[:, None], sample, mode="bilinear", padding_mode="zeros", align_corners=False)
    rgb = F.grid_sample(frame[None].expand(len(p), -1, -1, -1), sample, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return torch.cat([sil, rgb], 1), torch.cat([pixel_statistics(p, frame), _geometry(m, p.shape[-1], scores)], 1)


def proposal_geometry(mask_logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Proposal masks [N, S, S] (logits) and their object scores [N] -> [N, GEOMETRY_STATS]: centroid x, y and spread
    x, y (fractions of the mask's side), log area share, object score / 10 (the last columns of `cell_views`'
    stats)."""
    p = torch.sigmoid(mask_logits.float())
    return _geometry(moments(p), p.shape[-1], scores)


def geometry_features(geometry: torch.Tensor) -> torch.Tensor:
    """`proposal_geometry` [.., GEOMETRY_STATS] -> [.., HEAD_GEOMETRY]: the numbers themselves, and the centroid as
    sines and cosines at `GEOMETRY_FREQUENCIES` octaves (attention compares positions more easily that way)."""
    freqs = math.pi * 2.0 ** torch.arange(GEOMETRY_FREQUENCIES, device=geometry.device, dtype=geometry.dtype)
    angles = torch.cat([geometry[..., :1] * freqs, geometry[..., 1:2] * freqs], -1)
    return torch.cat([geometry, angles.sin(), angles.cos()], -1)


def _geometry(m: tuple[torch.Tensor, ...], side: int, scores: torch.Tensor) -> torch.Tensor:
    """`moments` of masks `side` cells wide and their object scores -> [N, GEOMETRY_STATS]."""
    cx, cy, sx, sy, mass = m
    return torch.stack([cx, cy, sx, sy, (mass / side ** 2).log(), scores.float() / 10], -1)


def pixel_statistics(p: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Soft masks [N, S, S] (0..1) and the frame [3, F, F] -> [N, PIXEL_FEATURES]: per colour channel, inside each
    mask's interior (eroded by one mask cell so that the outline is not read as texture; the whole mask where erosion
    leaves nothing), the mean, the standard deviation and the mean absolute difference to the next pixel along x and
    along y. Plain, striped and dotted fills differ in these (session-14 probe: they tell a proposal's texture 0.94 of
    the time, SAM2's pooled fine features 0.76, always "plain" 0.62)."""
    p = p.float()
    inner = -F.max_pool2d(-(p > 0.5).float()[:, None], 3, 1, 1)[:, 0]
    empty = inner.flatten(1).sum(1) == 0
    w = torch.where(empty[:, None, None], p, p * inner)
    img = frame.float()
    w = F.interpolate(w[:, None], size=img.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    w = w / w.flatten(1).sum(1).clamp_min(1e-6)[:, None, None]
    dx = F.pad((img[:, :, 1:] - img[:, :, :-1]).abs(), (0, 1))
    dy = F.pad((img[:, 1:] - img[:, :-1]).abs(), (0, 0, 0, 1))
    mean = torch.einsum("nhw,chw->nc", w, img)
    var = torch.einsum("nhw,chw->nc", w, img * img) - mean ** 2
    return torch.cat([mean, var.clamp_min(0).sqrt(), torch.einsum("nhw,chw->nc", w, dx),
                      torch.einsum("nhw,chw->nc", w, dy)], 1)


def motion_features(tracked: list[torch.Tensor], scores: list[torch.Tensor]) -> torch.Tensor:
    """Mask logits [N, s, s] of the same N proposals on the first frame and on up to `MOTION_FRAMES - 1` later frames
    (SAM2's tracking), with their object score logits [N] -> [N, MOTION_FEATURES]: per later frame the centroid's
    shift (x, y; frame units, x4), the log area ratio and the object score (/10); zeros for missing frames (an image)."""
    p = [torch.sigmoid(m.float()) for m in tracked]
    cx0, cy0, _, _, mass0 = moments(p[0])
    out = torch.zeros(p[0].shape[0], MOTION_FEATURES, device=p[0].device)
    for k, (pk, sk) in enumerate(zip(p[1:MOTION_FRAMES], scores[1:MOTION_FRAMES])):
        cx, cy, _, _, mass = moments(pk)
        out[:, 4 * k: 4 * k + 4] = torch.stack([(cx - cx0) * 4, (cy - cy0) * 4, (mass / mass0).log() / 4,
                                                sk.float() / 10], -1)
    return out


REGION_MOTION_FEATURES = 8  # `region_motion`: how a prompted region moves over the frame pairs it is given on


def region_motion_features(refer_mask: torch.Tensor) -> torch.Tensor:
    """bool [T/2, O, h, w] region masks -> [M, REGION_MOTION_FEATURES], one row per (object, non-empty frame pair)
    (objects outer, pairs inner, as `pool_memory`): the object's displacement from its first to its last pair (x, y;
    frame units, x4), the log ratio of its last to its first area (/2), the distance travelled along x and y (x4; more
    than the displacement when it turned back), the share of pairs it is given on, and this pair's offset from its
    first pair (x, y; x4). Zeros for an object given on one pair."""
    t2, num, h, w = refer_mask.shape
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    rows = []
    for o in range(num):
        m = refer_mask[:, o].float().cpu()
        on = m.flatten(1).sum(1) > 0
        if not on.any():
            continue
        m = m[on]
        area = m.flatten(1).sum(1)
        cx, cy = (m.sum(1) * xs).sum(1) / area, (m.sum(2) * ys).sum(1) / area
        path = torch.stack([cx.diff().abs().sum(), cy.diff().abs().sum()]) * 4
        whole = torch.cat([torch.stack([cx[-1] - cx[0], cy[-1] - cy[0]]) * 4, (area[-1] / area[0]).log()[None] / 2,
                           path, on.float().mean()[None]])
        for k in range(m.shape[0]):
            rows.append(torch.cat([whole, torch.stack([cx[k] - cx[0], cy[k] - cy[0]]) * 4]))
    return torch.stack(rows) if rows else torch.zeros(0, REGION_MOTION_FEATURES)


def spread_frames(num_frames: int) -> list[int]:
    """The later frames (`MOTION_FRAMES` - 1 at most) whose tracked proposals give the motion features: spread over
    the clip as the training recipe's SAM2 frames are (`sam2_max_frames: 4` keeps frame 0 and 3 spread ones)."""
    picks = torch.linspace(0, num_frames - 1, MOTION_FRAMES).round().long().unique().tolist()
    return [t for t in picks if t > 0]


def silhouettes(p: torch.Tensor, crop: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Soft masks [N, S, S] (0..1) -> each cropped around its centroid to a window 2.5 spreads wide each way and
    resampled to [N, 1, crop, crop] (the shape at one scale, wherever and however large the object is), and the
    moments (centroid x, y and spread x, y in [0, 1] frame units, mass in pixels)."""
    cx, cy, sx, sy, mass = moments(p)
    sample = _windows(cx, cy, sx, sy, p.shape[-1], crop)
    out = F.grid_sample(p[:, None], sample, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, (cx, cy, sx, sy, mass)


def _windows(cx, cy, sx, sy, s: int, crop: int) -> torch.Tensor:
    """Sampling grids [N, crop, crop, 2] of windows 2.5 spreads wide each way around each centroid (frame units)."""
    half = (2.5 * torch.maximum(sx, sy)).clamp(min=1.0 / s, max=1.0)
    theta = torch.zeros(len(cx), 2, 3, device=cx.device, dtype=cx.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 2 * half  # output [-1, 1] -> input centre +- 2 * half (normalised units)
    theta[:, 0, 2] = 2 * cx - 1
    theta[:, 1, 2] = 2 * cy - 1
    return F.affine_grid(theta, [len(cx), 1, crop, crop], align_corners=False)


def moments(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Soft masks [N, s, s] -> centroid x, y and spread x, y in [0, 1] frame units, and mass in pixels (each [N])."""
    s = p.shape[-1]
    mass = p.flatten(1).sum(-1).clamp_min(1e-3)
    w = p / mass[:, None, None]
    coords = (torch.arange(s, device=p.device, dtype=p.dtype) + 0.5) / s  # cell centres in [0, 1]
    cx = (w.sum(1) * coords).sum(-1)
    cy = (w.sum(2) * coords).sum(-1)
    sx = (w.sum(1) * (coords[None] - cx[:, None]) ** 2).sum(-1).sqrt()
    sy = (w.sum(2) * (coords[None] - cy[:, None]) ** 2).sum(-1).sqrt()
    return cx, cy, sx, sy, mass


def cell_centres(h: int, w: int, image_size: int, device: torch.device | None = None) -> torch.Tensor:
    """The centres [h*w, 2] (x, y in pixels of the S x S SAM2 frame) of an h x w grid, raster order."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([(xs.flatten() + 0.5) * image_size / w, (ys.flatten() + 0.5) * image_size / h], -1).float()
