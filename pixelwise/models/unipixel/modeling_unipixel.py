"""UniPixel = Qwen2.5-VL (transformers 5.x modules) + SAM2 + small adapters, numerically faithful to the official model.

Data flow of one query (batch of one sequence, as the official model):
1. Vision tower on the frame patches -> merged visual tokens (raster order) scattered into `<|video_pad|>`. The input
   of the merger MLP (`[N, 4*ViT width]`, in the tower's *window* order) is kept: `<|mem|>` pools it.
2. `<|ref|>` slots get a point/box embedding: `ref_encoder` (a SAM prompt encoder, sparse output) -> `ref_proj_single`
   (point, 2 tokens) or `ref_proj_double` (box, 3 tokens), concatenated with a temporal code of the prompt frame
   (`tem_pe` random Fourier features of frame/(2*grid_t - 1), + `tem_emb`, `tem_proj`), then `ref_proj`.
3. `<|mem|>` slots get `msk_proj(mean of merger-MLP inputs under the object's mask)` per (object, frame pair); the
   features are in window order and the mask in raster order, exactly as the official model pairs them.
4. The LLM runs with MRoPE positions computed by the transformers-4.53.3 rule (`mrope.py`).
5. Every `<|seg|>` is predicted from the *pre-final-norm* hidden state of the position before it; `seg_head` maps that
   state to `sam2_hidden_tokens` SAM2 prompt tokens. All objects of a query are tracked by SAM2 as one batch, with
   each frame encoded once, prompted on frame 0 and propagated forward.

The model methods take processed inputs (`UniPixelInputs`) and return tensors; the pipeline (`pixelwise.load`) only
has to process media, call `predict` and wrap the result.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pixelwise.core.checkpoint import check_model_bytes
from pixelwise.core.errors import CheckpointError, ConfigError, PixelwiseError, PromptError
from pixelwise.core.io import atomic_write_text, read_json
from pixelwise.models.unipixel.configuration_unipixel import UniPixelConfig
from pixelwise.models.unipixel.object_keys import (
    REGION_MOTION_FEATURES,
    GroundingHead,
    ObjectKeys,
    RetrievalRerank,
    cell_centres,
    cell_views,
    motion_features,
    proposal_geometry,
    region_motion_features,
    spread_frames,
)
from pixelwise.models.unipixel.processing_unipixel import RefPrompt, UniPixelInputs
from pixelwise.models.unipixel.weights_unipixel import (
    load_official_state_dict,
    official_state_dict,
    read_state_dict,
    save_state_dict,
    weight_files,
)
from pixelwise.modules.mrope import decode_position_ids, mrope_position_ids
from pixelwise.modules.positions import grid_positions
from pixelwise.modules.sam2.common import LayerNorm2d

# ----------------------------------------------------------------------------------------------- adapters


class RandomFourierEncoding(nn.Module):
    """sin/cos of a random Gaussian projection of coordinates in [0, 1] (SAM's positional encoding).

    The Gaussian matrix is a *persistent buffer*: trained weights depend on the exact draw, so it is loaded from the
    checkpoint, never re-sampled.
    """

    def __init__(self, num_feats: int, in_dim: int = 2):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(in_dim, num_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Always in float32 (the official code disables autocast here); the caller casts the result."""
        coords = 2 * coords.to(torch.float32) - 1
        coords = coords @ self.positional_encoding_gaussian_matrix.to(torch.float32)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)


class RefPromptEncoder(nn.Module):
    """UniPixel's `ref_encoder`: a second SAM prompt encoder whose *sparse* output embeds `<|ref|>` points/boxes.

    Coordinates are pixels of the S x S SAM2 frame. Labels: 1 positive point, 0 negative, 2/3 box corners; without a
    box argument SAM appends one "not-a-point" padding token, so a point gives 2 tokens and a box (2 corners) 3.
    The dense-mask branch is unused by UniPixel but its weights are part of the checkpoint.
    """

    def __init__(self, embed_dim: int, image_embedding_size: int, input_image_size: int, mask_in_chans: int = 16):
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = (input_image_size, input_image_size)
        self.image_embedding_size = (image_embedding_size, image_embedding_size)
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in range(4)])
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords [B, N, 2] (x, y), labels [B, N] -> sparse embeddings [B, N + 1, C]."""
        coords = coords.to(torch.float32) + 0.5  # pixel centres
        labels = labels.to(torch.int64)
        b = coords.shape[0]
        coords = torch.cat([coords, coords.new_zeros(b, 1, 2)], dim=1)
        labels = torch.cat([labels, labels.new_full((b, 1), -1)], dim=1)
        norm = coords.clone()
        norm[..., 0] = norm[..., 0] / self.input_image_size[1]
        norm[..., 1] = norm[..., 1] / self.input_image_size[0]
        emb = self.pe_layer.encode(norm).to(self.not_a_point_embed.weight.dtype)
        lab = labels.unsqueeze(-1)
        emb = torch.where(lab == -1, torch.zeros_like(emb) + self.not_a_point_embed.weight, emb)
        for code in range(4):
            emb = torch.where(lab == code, emb + self.point_embeddings[code].weight, emb)
        return emb


class TemporalFourierEncoding(nn.Module):
    """`tem_pe`: 1-D random Fourier features of a normalised frame position in [0, 1] (buffer loaded, not drawn)."""

    def __init__(self, num_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(1, num_feats))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t [N] in [0, 1] -> [N, 2 * num_feats]."""
        x = 2 * t.to(torch.float32).unsqueeze(-1) - 1
        x = x @ self.positional_encoding_gaussian_matrix.to(torch.float32)
        x = 2 * math.pi * x
        out = torch.cat([torch.sin(x), torch.cos(x)], dim=-1)
        return out.to(self.positional_encoding_gaussian_matrix.dtype)


# ----------------------------------------------------------------------------------------------- outputs


@dataclass
class UniPixelOutput:
    """One forward pass over a prompt (prefill). Tensors are for the single sequence (no batch dim)."""

    logits: torch.Tensor  # [L, V]
    prenorm_hidden: torch.Tensor  # [L, D] last decoder layer output before the final RMSNorm
    position_ids: torch.Tensor  # [3, L]
    rope_delta: int
    past_key_values: Any = None
    video_embeds: torch.Tensor | None = None  # [N, D] raster order
    merger_input: torch.Tensor | None = None  # [N, 4*Cv] window order
    window_index: torch.Tensor | None = None  # [N]
    ref_sparse: list[torch.Tensor] = field(default_factory=list)  # per object [n_tokens, C]
    ref_proj_input: torch.Tensor | None = None  # [R, 6C]
    ref_embeds: torch.Tensor | None = None  # [R, D]
    mem_pooled: torch.Tensor | None = None  # [M, 4*Cv]
    mem_embeds: torch.Tensor | None = None  # [M, D]
    # `config.llm_object_view`: the prompted frame's object-key additions [h*w, k] and descriptors [h*w, width]
    objects: tuple[torch.Tensor, torch.Tensor] | None = None
    # `config.region_mentions`: region number -> its embedding [D] (what a `[k` in the text, generated ones too, adds)
    mentions: dict[int, torch.Tensor] = field(default_factory=dict)
    seg_positions: list[int] = field(default_factory=list)  # teacher-forced <|seg|>: positions i with ids[i+1]==seg
    # Positions taken from a `PrefixCache` (not recomputed): `logits` / `prenorm_hidden` row r is position
    # `prefix_length + r`, and `seg_positions` lists only positions from there on.
    prefix_length: int = 0

    @property
    def vision(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The vision tower outputs, to pass as `UniPixelInputs.vision` to a later query on the same frames."""
        if self.video_embeds is None or self.merger_input is None or self.window_index is None:
            return None
        return self.video_embeds, self.merger_input, self.window_index


@dataclass
class PrefixCache:
    """The LLM's keys and values for the tokens `input_ids`: a later prompt that starts with the same tokens (the
    next turn of a chat) prefills only the rest. Reusing it crops and extends it in place."""

    input_ids: torch.Tensor  # [N]
    past_key_values: Any


@dataclass
class GenerationOutput:
    """Greedy decoding. `seg_states` holds the pre-norm hidden state behind every `<|seg|>` (teacher-forced ones
    in the prompt first, then generated ones), in text order."""

    prompt_length: int
    generated_ids: torch.Tensor  # [N] new tokens (a final stop token included)
    step_logits: torch.Tensor  # [N, V] logits that produced each new token
    step_prenorm_hidden: torch.Tensor  # [N, D] pre-norm state of the last position of each forward
    seg_states: torch.Tensor  # [O, D]
    seg_token_index: list[int]  # for each object: index into generated_ids of its <|seg|> (-1 = in the prompt)
    prefill: UniPixelOutput
    cache: PrefixCache | None = None  # prompt + answer, for the next turn of a conversation
    seg_words: torch.Tensor | None = None  # [O, L] the question each `<|seg|>` answers (`config.seg_ground_words`)


@dataclass
class SegmentationOutput:
    """Masks for every `<|seg|>` of a query, objects in text order."""

    prompt_tokens: torch.Tensor  # [O, H, C] seg_head outputs given to SAM2
    masks: torch.Tensor  # bool [O, T, H, W] at the original frame size
    mask_logits: torch.Tensor  # [O, T, H, W]
    sam2: Any = None  # the SAM2 module's full tracking output
    features: Any = None  # the SAM2 frame features (computed once, shared by all objects)


@dataclass
class Prediction:
    """What `predict` returns: the answer's token ids and one mask track per `<|seg|>`."""

    generated_ids: torch.Tensor
    seg_token_index: list[int]
    segmentation: SegmentationOutput | None
    generation: GenerationOutput


# ----------------------------------------------------------------------------------------------- model


# `region_mentions` starts open, unlike the zero-initialised options: from zero the gate stayed near 0.01 over 300
# steps and the LLM never learned to read it; from 0.2 (the region embeddings have RMS ~1 after `region_norm`, the
# tiny model's token embeddings ~0.16) the model learned to name regions (docs/models/unipixel-tiny.md, session 8)
MENTION_GATE_INIT = 0.2


def _sam2_module():
    """The SAM2 implementation (`pixelwise.modules.sam2`), or None with the reason when it is not available."""
    try:
        from pixelwise.modules.sam2 import Sam2Config, Sam2Model  # SAM2 is optional at load (build_sam2=False)
    except ImportError:  # the module is built separately; its absence must be reported, not hidden
        return None, "SAM2 module missing (pixelwise.modules.sam2)"
    return (Sam2Config, Sam2Model), None


def _check_declared_size(cls: type, config: UniPixelConfig, path: Path, build_sam2: bool) -> None:
    """The whole model (SAM2 included) built on the meta device, checked against the bytes the weights hold, before
    anything is allocated: an absurd size in config.json is a CheckpointError, not gigabytes and a minute."""

    try:
        with torch.device("meta"):
            probe = cls(config, build_sam2=False)
            if config.has_sam2 and build_sam2:
                probe.build_sam2()
    except PixelwiseError:
        raise
    except (ArithmeticError, ValueError, TypeError, RuntimeError, KeyError, IndexError, AttributeError) as e:
        raise ConfigError(f"{path}/config.json: the model cannot be built from it ({type(e).__name__}: {e})") from None
    check_model_bytes(probe, weight_files(path), str(path))


class UniPixelForConditionalGeneration(nn.Module):
    """The UniPixel model. Module names follow the official checkpoint (see `weights_unipixel`)."""

    def __init__(self, config: UniPixelConfig, build_sam2: bool = True):
        super().__init__()
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
            Qwen2_5_VisionTransformerPretrainedModel,
            Qwen2_5_VLTextModel,
        )

        self.config = config
        text_cfg = config.build_text_config()
        vision_cfg = config.build_vision_config()
        self.visual = Qwen2_5_VisionTransformerPretrainedModel(vision_cfg)
        self.language_model = Qwen2_5_VLTextModel(text_cfg)
        d = config.hidden_size
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.language_model.embed_tokens.weight

        c = config.sam2_hidden_dim
        n_tok = config.sam2_hidden_tokens
        # RMSNorm(D) with the norm class's default eps (1e-6), as the official head is declared.
        self.seg_head = nn.Sequential(_rms_norm(d, 1e-6), nn.Linear(d, d), nn.GELU(), nn.Linear(d, c * n_tok))
        self.ref_encoder = RefPromptEncoder(c, config.sam2_embedding_size, config.sam2_image_size)
        self.ref_proj_single = nn.Linear(2 * c, 3 * c)
        self.ref_proj_double = nn.Linear(3 * c, 3 * c)
        self.tem_pe = TemporalFourierEncoding(c // 2)
        self.tem_emb = nn.Embedding(1, c)
        self.tem_proj = nn.Linear(c, 3 * c)
        self.ref_proj = nn.Sequential(nn.GELU(), nn.Linear(6 * c, d))
        m = config.merger_hidden_size
        self.msk_proj = nn.Sequential(nn.Linear(m, m), nn.GELU(), nn.Linear(m, d))
        if config.vision_abs_pos:  # tiny models only (configuration_unipixel: vision_abs_pos); zero at init
            self.visual_pos_rows = nn.Embedding(config.vision_abs_pos, d)
            self.visual_pos_cols = nn.Embedding(config.vision_abs_pos, d)
            nn.init.zeros_(self.visual_pos_rows.weight)
            nn.init.zeros_(self.visual_pos_cols.weight)

        if config.embed_norm:  # tiny models only (configuration_unipixel: embed_norm)
            self.visual_norm = _rms_norm(d, 1e-6)
            self.region_norm = _rms_norm(d, 1e-6)

        if config.seg_retrieval_dim:  # tiny models only (configuration_unipixel: seg_retrieval_dim)
            k = config.seg_retrieval_dim
            self.seg_query = nn.Sequential(_rms_norm(d, 1e-6), nn.Linear(d, k))
            self.seg_key = nn.Sequential(nn.Linear(2 * c, k), nn.GELU(), nn.Linear(k, k))
            if config.seg_key_high_res:  # stride-4 (c/8) and stride-8 (c/4) features pooled to the key grid
                self.seg_key_hr = nn.Linear(c // 8 + c // 4, k)
                nn.init.zeros_(self.seg_key_hr.weight)
                nn.init.zeros_(self.seg_key_hr.bias)
            if config.seg_key_visual:  # the LLM's visual tokens of the prompted frame, resized to the key grid
                self.seg_key_vis = nn.Sequential(_rms_norm(d, 1e-6), nn.Linear(d, k))
                nn.init.zeros_(self.seg_key_vis[1].weight)
                nn.init.zeros_(self.seg_key_vis[1].bias)
            if config.seg_key_objects:  # what SAM2 segments when clicked at each cell, described
                self.object_keys = ObjectKeys(d, c // 8 + c // 4, k, config.seg_key_objects, d,
                                              motion=config.seg_key_motion, pixels=config.seg_key_pixels)
            if config.seg_key_words:  # keys -> word space, for the training loss only
                self.seg_key_words = nn.Linear(k, d)
            if config.seg_rerank:  # the scores refined with every cell in view; zero at init
                self.seg_rerank = RetrievalRerank(k, config.seg_rerank)
            if config.seg_ground:  # the scores refined from the whole state and the descriptors; zero at init
                side = config.seg_grid or config.sam2_image_size // 16
                self.seg_ground = GroundingHead(d, k, config.seg_key_objects, side * side, config.seg_ground_width,
                                                config.seg_ground, eyes=config.seg_ground_eyes,
                                                words=config.seg_ground_words, vocab=config.vocab_size,
                                                geometry=config.seg_ground_geometry)
            if config.llm_object_view:  # the descriptors shown to the LLM (visual tokens, `<|mem|>`); zero at init
                self.object_view = nn.Linear(config.seg_key_objects, d)
                nn.init.zeros_(self.object_view.weight)
                nn.init.zeros_(self.object_view.bias)

        if config.region_motion:  # tiny models only (configuration_unipixel: region_motion); zero at init
            self.region_motion = nn.Linear(REGION_MOTION_FEATURES, d)
            nn.init.zeros_(self.region_motion.weight)
            nn.init.zeros_(self.region_motion.bias)

        if config.region_mentions:  # tiny models only (configuration_unipixel: region_mentions)
            self.mention_gate = nn.Parameter(torch.full((d,), MENTION_GATE_INIT))
            self._mention_open = frozenset(int(i) for i in config.region_mentions["open"])
            self._mention_digits = {int(i): int(v) for i, v in config.region_mentions["digits"]}

        if config.option_links:  # tiny models only (configuration_unipixel: option_links)
            self.option_gate = nn.Parameter(torch.ones(d))
            links = config.option_links
            self._option_open, self._option_close = frozenset(links["open"]), frozenset(links["close"])
            self._option_letters = {int(i): int(k) for i, k in links["letters"]}
            self._option_stops = frozenset(links["stops"])
        if config.option_pointer:  # tiny models only (configuration_unipixel: option_pointer)
            self.option_query = nn.Sequential(_rms_norm(d, 1e-6), nn.Linear(d, config.option_pointer))
            self.option_key = nn.Sequential(_rms_norm(d, 1e-6), nn.Linear(d, config.option_pointer))

        self.stop_token_ids: list[int] | None = None  # from generation_config.json when loaded from a folder
        self.sam2: nn.Module | None = None
        self.sam2_unavailable: str | None = "SAM2 not built (build_sam2=False)"
        if not config.has_sam2:
            self.sam2_unavailable = "this checkpoint has no SAM2 part"
        elif build_sam2:
            self.build_sam2()

    def build_sam2(self) -> None:
        """Create the SAM2 part from the config (`pixelwise.modules.sam2`); records why when it is unavailable."""
        classes, reason = _sam2_module()
        if classes is None:
            self.sam2, self.sam2_unavailable = None, reason
            return
        sam2_config_cls, sam2_model_cls = classes
        self.sam2 = sam2_model_cls(sam2_config_cls.from_unipixel_config(self.config.to_dict()))
        self.sam2_unavailable = None

    # ------------------------------------------------------------------ loading / saving

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32, build_sam2: bool = True,
                        ) -> UniPixelForConditionalGeneration:
        """Build from `config.json` and load the official-layout safetensors weights (sharded or not).

        The Qwen part and the adapters are created on the meta device and take the checkpoint tensors directly
        (no random init, no second copy: a 3B/7B model loads in its own memory footprint); `dtype` is the compute
        dtype (float32 on CPU, as the conformance vectors).
        """
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: not a checkpoint folder")
        config = UniPixelConfig.from_pretrained(path)
        _check_declared_size(cls, config, path, build_sam2)
        state = read_state_dict(path)
        with torch.device("meta"):
            model = cls(config, build_sam2=False)
        if config.has_sam2 and build_sam2:
            model.build_sam2()  # small; built for real because its loader copies into existing tensors
        load_official_state_dict(model, state, source=str(path), assign=True, dtype=dtype)
        model._materialize_rotary()
        meta = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
        if meta:
            raise CheckpointError(f"{path}: tensors left uninitialised after loading: {', '.join(meta[:8])}")
        model.stop_token_ids = _generation_stop_ids(path)
        return model.eval()

    def _materialize_rotary(self) -> None:
        """Re-create the rotary tables (non-persistent buffers, never in a checkpoint) after a meta-device build."""
        vis, txt = self.visual.rotary_pos_emb, self.language_model.rotary_emb
        if any(b.is_meta for b in vis.buffers()):
            self.visual.rotary_pos_emb = type(vis)(self.visual.config)
        if any(b.is_meta for b in txt.buffers()):
            self.language_model.rotary_emb = type(txt)(config=self.language_model.config)

    def save_pretrained(self, path: str | Path, processor: Any = None, max_shard_bytes: int | None = None,
                        float16: Sequence[str] = ()) -> Path:
        """Write config.json + safetensors in the official layout (so the official loader and ours both read it).
        `float16`: name prefixes of tensors stored in float16 (they load in the compute dtype, as an official
        checkpoint's bfloat16 ones do): a way to keep a shipped tiny model small."""
        if self.sam2 is None and self.config.has_sam2:
            raise CheckpointError(f"cannot save without the SAM2 part: {self.sam2_unavailable}")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(path)
        state = official_state_dict(self)
        prefixes = tuple(float16)
        if prefixes:
            state = {k: v.half() if k.startswith(prefixes) and v.is_floating_point() else v for k, v in state.items()}
        save_state_dict(state, path, max_shard_bytes=max_shard_bytes)
        if self.stop_token_ids is not None:
            import json


            atomic_write_text(path / "generation_config.json",
                              json.dumps({"eos_token_id": self.stop_token_ids}, indent=2) + "\n")
        if processor is not None:
            processor.save_pretrained(path)
        return path

    # ------------------------------------------------------------------ pieces

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def visual_features(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (merged embeddings [N, D] raster order, merger-MLP input [N, 4*Cv] window order, window_index [N])."""
        from transformers.vision_utils import get_vision_window_index

        captured: dict[str, torch.Tensor] = {}

        def hook(_module, args):
            captured["x"] = args[0]

        handle = self.visual.merger.mlp.register_forward_pre_hook(hook)
        try:
            out = self.visual(pixel_values.to(self.dtype), grid_thw=grid_thw)
        finally:
            handle.remove()
        vc = self.visual.config
        window_index, _ = get_vision_window_index(grid_thw, vc.spatial_merge_size, vc.window_size, vc.patch_size)
        return out.pooler_output, captured["x"], window_index

    def absolute_positions(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """Row + column embeddings of every merged visual token, raster order per frame pair -> [N, D]. A side
        longer than the table (`vision_abs_pos`; a non-square frame keeps its aspect, so one side can exceed what the
        square training frames had) reads the table linearly interpolated to its length: first and last token keep
        the first and last row."""
        m = self.config.spatial_merge_size
        t, h, w = (int(v) for v in grid_thw.reshape(-1, 3)[0])
        gh, gw = h // m, w // m
        return grid_positions(self.visual_pos_rows.weight, self.visual_pos_cols.weight, gh, gw).repeat(t, 1)

    def temporal_code(self, frames: torch.Tensor, num_llm_frames: int) -> torch.Tensor:
        """Prompt frame indices [R] -> [R, 3C]; frames are normalised by (2*grid_t - 1) as in the official model."""
        t = frames.to(torch.float32) / max(1, num_llm_frames - 1)
        x = self.tem_pe(t) + self.tem_emb.weight
        return self.tem_proj(x)

    def ref_embeddings(self, prompts: Sequence[RefPrompt], grid_t: int
                       ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """`<|ref|>` objects -> (embeddings [R, D], ref_proj inputs [R, 6C], sparse tokens per object)."""
        sparse_list, spatial = [], []
        for p in prompts:
            sparse = self.ref_encoder.embed_points(p.coords.to(self.device), p.labels.to(self.device))  # [1, n+1, C]
            sparse_list.append(sparse[0])
            flat = sparse.flatten(1)
            n_tok = sparse.shape[1]
            if n_tok == 2:
                spatial.append(self.ref_proj_single(flat))
            elif n_tok == 3:
                spatial.append(self.ref_proj_double(flat))
            else:
                raise PromptError(f"a <|ref|> prompt is one point or one box, got {n_tok - 1} coordinates")
        frames = torch.tensor([p.frame for p in prompts], dtype=torch.int64, device=self.device)
        temporal = self.temporal_code(frames, 2 * grid_t)
        proj_in = torch.cat([torch.cat(spatial, 0), temporal.to(spatial[0].dtype)], dim=-1)
        return self.ref_proj(proj_in), proj_in, sparse_list

    @staticmethod
    def pool_memory(merger_input: torch.Tensor, refer_mask: torch.Tensor) -> torch.Tensor:
        """Mean merger-MLP input under each (object, frame pair) mask -> [M, 4*Cv], objects outer, pairs inner.

        `merger_input` is in window order and `refer_mask` in raster order: the official model pairs them so, and its
        weights were trained that way.
        """
        groups, num_objects = refer_mask.shape[:2]
        per_group = refer_mask[0, 0].numel()
        if merger_input.shape[0] != groups * per_group:
            raise PromptError(
                f"refer_mask covers {groups} frame pairs x {per_group} tokens, the video has {merger_input.shape[0]}"
            )
        feats = merger_input.view(groups, per_group, -1)
        pooled = []
        for o in range(num_objects):
            for g in range(groups):
                m = refer_mask[g, o].reshape(-1).to(merger_input.device)
                if m.any():
                    pooled.append(feats[g][m].mean(0))
        if not pooled:
            return merger_input.new_zeros(0, merger_input.shape[-1])
        return torch.stack(pooled)

    def seg_prompt_tokens(self, states: torch.Tensor) -> torch.Tensor:
        """Pre-norm hidden states [O, D] -> SAM2 prompt tokens [O, sam2_hidden_tokens, C]."""
        out = self.seg_head(states)
        return out.view(states.shape[0], self.config.sam2_hidden_tokens, self.config.sam2_hidden_dim)

    def llm_visual_tokens(self, video_embeds: torch.Tensor, grid_thw: torch.Tensor,
                          view: torch.Tensor | None = None) -> torch.Tensor:
        """The tower's merged tokens [N, D] as the LLM receives them (+ absolute positions, + `view` [n, D] on the
        first n tokens, + `visual_norm`)."""
        if view is not None:
            video_embeds = torch.cat([video_embeds[: view.shape[0]] + view.to(video_embeds.dtype),
                                      video_embeds[view.shape[0]:]])
        if self.config.vision_abs_pos:
            video_embeds = video_embeds + self.absolute_positions(grid_thw).to(video_embeds.dtype)
        if self.config.embed_norm:
            video_embeds = self.visual_norm(video_embeds)
        return video_embeds

    def retrieval_visual(self, video_embeds: torch.Tensor | None, grid_thw: torch.Tensor | None,
                         every_pair: bool = False) -> torch.Tensor | None:
        """The first frame pair's visual tokens as a grid [gh, gw, D] for `seg_prompts` (None unless
        `config.seg_key_visual`): the frame the `<|seg|>` prompt is given on is frame 0. `every_pair`: every frame
        pair's grid [T/2, gh, gw, D]."""
        if not (self.config.seg_retrieval_dim and self.config.seg_key_visual):
            return None
        if video_embeds is None or grid_thw is None:
            raise PromptError("this model's retrieval keys read the visual tokens: segmentation needs the frames' "
                              "vision-tower outputs")
        m = self.config.spatial_merge_size
        _, h, w = (int(v) for v in grid_thw.reshape(-1, 3)[0])
        gh, gw = h // m, w // m
        grids = self.llm_visual_tokens(video_embeds, grid_thw).reshape(-1, gh, gw, video_embeds.shape[-1])
        return grids if every_pair else grids[0]

    def object_proposals(self, frame: Any, visual: torch.Tensor, later: Sequence[Any] = (),
                         grid: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`config.seg_key_objects`: SAM2 clicked at the centre of every cell of a grid on the prompted frame (one
        batch, no gradient), each proposal described (`ObjectKeys`) -> (key additions [h*w, k], descriptors
        [h*w, width]). `visual` is `retrieval_visual(...)` of the same frames; `later` the SAM2 features of the
        clip's `spread_frames` (with `config.seg_key_motion`; none for an image); `grid` (h, w) defaults to the
        grid of SAM2's embedding."""
        sam2 = self.require_sam2()
        emb = frame.embed[0]
        tokens = visual.permute(2, 0, 1).to(emb)  # [D, gh, gw]
        motion = None
        masks, scores, prompts = self.cell_proposals(frame, grid)
        with torch.no_grad():
            if self.config.seg_key_motion:  # where each proposal goes: tracked to the later frames, one batch
                tracked = list(sam2.track_frames([frame, *later], prompts, None, cond_frame=0))
                motion = motion_features([t.lowres_mask_logits for t in tracked],
                                         [t.object_score_logits for t in tracked])
        fine = torch.cat([frame.high_res_s0[0], F.interpolate(frame.high_res_s1, size=frame.high_res_s0.shape[-2:],
                                                              mode="bilinear", align_corners=False)[0]], 0)
        pixels = None
        if self.config.seg_key_pixels:
            if frame.pixels is None:
                raise PromptError("this model's object keys read the frame's pixels: encode it with "
                                  "Sam2Model.encode_frames")
            pixels = frame.pixels[0].to(emb)
        return self.object_keys(masks, scores, tokens, fine, motion, pixels)

    @torch.no_grad()
    def cell_proposals(self, frame: Any, grid: tuple[int, int] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SAM2 clicked at the centre of every cell of a grid on `frame` (default: its embedding's grid), one batch
        -> (mask logits [h*w, s, s], object scores [h*w], the click prompt tokens). Kept on the frame's features
        (`Sam2FrameFeatures.proposals`): the object descriptors and the grounding head's geometry read the same
        proposals, made once."""
        sam2 = self.require_sam2()
        emb = frame.embed[0]
        h, w = grid or emb.shape[-2:]
        kept = getattr(frame, "proposals", None)
        if kept is not None and (h, w) in kept:
            return kept[h, w]
        clicks = cell_centres(h, w, sam2.image_size, emb.device).to(emb.dtype)
        points = torch.stack([clicks, torch.zeros_like(clicks)], 1)
        labels = torch.tensor([1, -1], device=emb.device).expand(h * w, 2)
        prompts = sam2.sam_prompt_encoder.embed_points(points, labels, pad=False)
        masks, scores = sam2.propose(frame, prompts)
        if kept is not None:
            kept[h, w] = masks, scores, prompts
        return masks, scores, prompts

    def retrieval_grid(self, frame: Any) -> tuple[int, int]:
        """(h, w) of the cells the retrieval chooses among on `frame` (`config.seg_grid`, else SAM2's embedding grid)."""
        g = self.config.seg_grid
        return (g, g) if g else tuple(int(v) for v in frame.embed.shape[-2:])

    def retrieval_keys(self, frame: Any, visual: torch.Tensor | None = None,
                       objects: tuple[torch.Tensor, torch.Tensor] | None = None, later: Sequence[Any] = ()
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The retrieval keys [h*w, k] of the prompted frame's grid cells (`config.seg_retrieval_dim`), and with
        `config.seg_key_objects` the object descriptors behind them [h*w, width] (else None). `visual` is
        `retrieval_visual(...)` of the same frames, needed when `config.seg_key_visual`; `objects` is
        `object_proposals(frame, visual, later)` when already computed (`UniPixelOutput.objects`); `later` as there."""
        sam2 = self.require_sam2()
        emb = frame.embed[0]  # [C, h, w], before any memory
        pe = sam2.sam_prompt_encoder.get_dense_pe()[0].to(emb)
        h, w = self.retrieval_grid(frame)
        if emb.shape[-2:] != (h, w):  # `config.seg_grid`: the embedding read at the finer grid's cell centres
            emb, pe = (F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0] for x in (emb, pe))
        first, act, last = self.seg_key
        pre = first(torch.cat([emb, pe], 0).flatten(1).T)  # [h*w, k], before the activation
        if self.config.seg_key_high_res:
            fine = torch.cat([F.adaptive_avg_pool2d(frame.high_res_s0[0], (h, w)),
                              F.adaptive_avg_pool2d(frame.high_res_s1[0], (h, w))], 0).flatten(1).T  # [h*w, c/8+c/4]
            pre = pre + self.seg_key_hr(fine)
        desc = None
        if self.config.seg_key_visual:
            if visual is None:
                raise PromptError("this model's retrieval keys read the visual tokens: pass seg_prompts(visual=...)")
            tokens = visual.permute(2, 0, 1).to(emb)  # [D, gh, gw]
            grid = tokens if tokens.shape[-2:] == (h, w) else F.interpolate(
                tokens[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            pre = pre + self.seg_key_vis(grid.flatten(1).T)
            if self.config.seg_key_objects:
                if objects is None or objects[0].shape[0] != h * w:  # none yet, or made on another grid (the LLM's)
                    objects = self.object_proposals(frame, visual, later, (h, w))
                add, desc = objects
                pre = pre + add
        return last(act(pre)), desc  # [h*w, k]

    def seg_words(self, ids: torch.Tensor | Sequence[int], positions: Sequence[int], length: int | None = None
                  ) -> torch.Tensor:
        """The question each `<|seg|>` answers, as the grounding head reads it (`config.seg_ground_words`): for the
        state at each position of `ids` (the prompt, and the answer so far), the ordinary tokens (ids below
        `bos_token_id`: Qwen's special tokens all follow its text vocabulary) of the turn that the last
        `<|im_end|>` (`eos_token_id`) before it closes, the last `length` of them (default: the option's value)
        -> int64 [O, length], -1 pads. Without a chat template, the text before the position."""
        length = int(length or self.config.seg_ground_words)
        ids = torch.as_tensor(ids).reshape(-1).cpu()
        end, bos = self.config.raw.get("eos_token_id"), self.config.raw.get("bos_token_id")
        end = end[0] if isinstance(end, list) else end
        ends = (ids == end).nonzero().flatten().tolist() if end is not None else []
        out = torch.full((len(positions), length), -1, dtype=torch.int64)
        for o, i in enumerate(positions):
            k = bisect.bisect_left(ends, i)  # the turn ends[k - 1] closes, after the one ends[k - 2] closes
            turn = ids[(ends[k - 2] + 1 if k > 1 else 0):(ends[k - 1] if k else i + 1)]
            turn = (turn[turn < bos] if bos is not None else turn)[-length:]
            out[o, :len(turn)] = turn
        return out

    def _generated_seg_words(self, prompt: torch.Tensor, new_ids: Sequence[int], prompt_positions: Sequence[int],
                             seg_index: Sequence[int]) -> torch.Tensor | None:
        """`seg_words` for a generation's `<|seg|>` (those in the prompt, then the new ones), None without the option."""
        if not self.config.seg_ground_words:
            return None
        prompt = prompt.reshape(-1).cpu()
        ids = torch.cat([prompt, torch.tensor(list(new_ids), dtype=torch.int64)])
        n = len(prompt)
        return self.seg_words(ids, list(prompt_positions) + [n - 1 + s for s in seg_index if s >= 0])

    def seg_prompts(self, states: torch.Tensor, frame: Any, visual: torch.Tensor | None = None,
                    keys: torch.Tensor | None = None, later: Sequence[Any] = (),
                    objects: tuple[torch.Tensor, torch.Tensor] | None = None, desc: torch.Tensor | None = None,
                    words: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """SAM2 prompt tokens [O, n, C] for `<|seg|>` states [O, D] on the prompted frame's SAM2 features
        (`Sam2FrameFeatures`), and the retrieval logits [O, h*w] over its grid cells (None with the official head).
        `visual` is `retrieval_visual(...)` of the same frames, needed when `config.seg_key_visual`; `keys` are
        `retrieval_keys(frame, visual)[0]` when already computed; `later` is `later_frames(...)` of the clip (models
        with `seg_key_motion`); `objects` is `UniPixelOutput.objects` of the same frames when already computed; `desc`
        the descriptors `retrieval_keys` returned with the given `keys` (models with `seg_ground`); `words` the
        question of each state (`seg_words`, models with `seg_ground_words`)."""
        if not self.config.seg_retrieval_dim:
            return self.seg_prompt_tokens(states), None
        sam2 = self.require_sam2()
        h, w = self.retrieval_grid(frame)
        if keys is None:
            keys, desc = self.retrieval_keys(frame, visual, objects, later)
        query = self.seg_query(states)  # [O, k]
        logits = query @ keys.T / keys.shape[-1] ** 0.5
        if self.config.seg_rerank:
            logits = self.seg_rerank(query, keys, logits)
        if self.config.seg_ground:
            if desc is None:
                raise PromptError("this model's grounding head reads the object descriptors: pass seg_prompts(desc=...)"
                                  " with the keys, or no keys")
            views = None
            if self.config.seg_ground_eyes:  # each cell's proposal seen at the frame's resolution
                if frame.pixels is None:
                    raise PromptError("this model's grounding head reads the frame's pixels: encode it with "
                                      "Sam2Model.encode_frames")
                masks, scores, _ = self.cell_proposals(frame, (h, w))
                views = cell_views(masks, scores, frame.pixels[0])
            if self.config.seg_ground_words and words is None:
                raise PromptError("this model's grounding head reads the question's words: pass "
                                  "seg_prompts(words=model.seg_words(ids, positions))")
            geometry = None
            if self.config.seg_ground_geometry:  # the proposals the descriptors were made from (kept on the frame)
                geometry = proposal_geometry(*self.cell_proposals(frame, (h, w))[:2])
            logits = self.seg_ground(states, keys, desc, logits, views=views,
                                     words=words.to(states.device) if words is not None else None, geometry=geometry)
        click = local_soft_argmax(logits, h, w, sam2.image_size)  # [O, 2] SAM2 pixels
        coords = torch.stack([click, torch.zeros_like(click)], 1)
        labels = torch.tensor([1, -1], device=click.device).expand(click.shape[0], 2)
        return sam2.sam_prompt_encoder.embed_points(coords, labels, pad=False), logits

    # ------------------------------------------------------------------ forward

    def embed(self, inputs: UniPixelInputs) -> tuple[torch.Tensor, UniPixelOutput]:
        """Token embeddings with the visual, `<|ref|>` and `<|mem|>` slots filled -> ([1, L, D], partial output)."""
        cfg = self.config
        ids = inputs.input_ids.to(self.device).reshape(-1)
        embeds = self.language_model.embed_tokens(ids).clone()
        info = UniPixelOutput(logits=torch.empty(0), prenorm_hidden=torch.empty(0), position_ids=torch.empty(0),
                              rope_delta=0)
        video_pos = (ids == cfg.video_token_id).nonzero().flatten()
        if (inputs.vision is not None or inputs.pixel_values_videos is not None) and video_pos.numel():
            if inputs.vision is not None:  # the same frames were encoded by an earlier query (a chat turn)
                video_embeds, merger_input, window_index = inputs.vision
            else:
                video_embeds, merger_input, window_index = self.visual_features(
                    inputs.pixel_values_videos.to(self.device), inputs.video_grid_thw.to(self.device)
                )
            if video_embeds.shape[0] != video_pos.numel():
                raise PromptError(f"{video_pos.numel()} <|video_pad|> tokens for {video_embeds.shape[0]} visual tokens")
            # the tower's output is what a later query reuses (`UniPixelOutput.vision`)
            view = on_tokens = None
            if cfg.llm_object_view:
                info.objects = (inputs.objects if inputs.objects is not None
                                else self.frame_objects(inputs, video_embeds))
                on_tokens = self.objects_on_tokens(info.objects[1], inputs.video_grid_thw)
                view = self.object_view(on_tokens)
            placed = self.llm_visual_tokens(video_embeds, inputs.video_grid_thw, view)
            embeds[video_pos] = placed.to(embeds.dtype)
            info.video_embeds, info.merger_input, info.window_index = video_embeds, merger_input, window_index
        elif video_pos.numel():
            raise PromptError("the text has <|video_pad|> tokens but no frames were given")

        ref_pos = (ids == cfg.ref_token_id).nonzero().flatten()
        if ref_pos.numel() != len(inputs.ref_prompts):
            raise PromptError(f"{ref_pos.numel()} <|ref|> tokens in the text but {len(inputs.ref_prompts)} visual prompts")
        if ref_pos.numel():
            grid_t = int(inputs.video_grid_thw.reshape(-1, 3)[0, 0])
            ref_embeds, proj_in, sparse = self.ref_embeddings(inputs.ref_prompts, grid_t)
            if cfg.embed_norm:
                ref_embeds = self.region_norm(ref_embeds)
            embeds[ref_pos] = ref_embeds.to(embeds.dtype)
            info.ref_embeds, info.ref_proj_input, info.ref_sparse = ref_embeds, proj_in, sparse

        mem_pos = (ids == cfg.mem_token_id).nonzero().flatten()
        if mem_pos.numel() or inputs.refer_mask is not None:
            if inputs.refer_mask is None or info.merger_input is None:
                raise PromptError("<|mem|> tokens need frames and a refer_mask")
            pooled = self.pool_memory(info.merger_input, inputs.refer_mask)
            if pooled.shape[0] != mem_pos.numel():
                raise PromptError(f"{mem_pos.numel()} <|mem|> tokens in the text but {pooled.shape[0]} non-empty "
                                  "(object, frame pair) masks")
            mem_embeds = self.msk_proj(pooled)
            if cfg.llm_object_view:
                own = self.own_frame_objects(inputs, info.video_embeds) if cfg.region_own_frame else {}
                mem_embeds = mem_embeds + self.object_view(
                    self.region_descriptors(on_tokens, inputs.refer_mask, own)).to(mem_embeds.dtype)
            if cfg.region_motion:
                motion = region_motion_features(inputs.refer_mask).to(mem_embeds.device, mem_embeds.dtype)
                mem_embeds = mem_embeds + self.region_motion(motion)
            if cfg.embed_norm:
                mem_embeds = self.region_norm(mem_embeds)
            embeds[mem_pos] = mem_embeds.to(embeds.dtype)
            info.mem_pooled, info.mem_embeds = pooled, mem_embeds

        seq = ids.tolist() if cfg.option_links or cfg.region_mentions else []
        if cfg.option_links:
            links = self.option_spans(seq)
            if links:
                words = self.language_model.embed_tokens(ids)
                pos = torch.tensor([p for p, _ in links], device=embeds.device)
                add = torch.stack([words[span].mean(0) for _, span in links]) * self.option_gate
                embeds = embeds.index_add(0, pos, add.to(embeds.dtype))
        if cfg.region_mentions and (ref_pos.numel() or mem_pos.numel()):
            info.mentions = self.region_table(seq, [(ref_pos, info.ref_embeds), (mem_pos, info.mem_embeds)])
            hits = [(q, k) for q in range(1, len(seq)) if (k := self.region_number(seq, q)) in info.mentions]
            if hits:
                pos = torch.tensor([q for q, _ in hits], device=embeds.device)
                add = torch.stack([info.mentions[k] for _, k in hits]) * self.mention_gate
                embeds = embeds.index_add(0, pos, add.to(embeds.dtype))
        return embeds.unsqueeze(0), info

    def option_spans(self, seq: Sequence[int], max_words: int = 4) -> list[tuple[int, list[int]]]:
        """`config.option_links`: every "(X) words" of a user turn -> (the letter's position, the positions of up
        to `max_words` words after ")" that come before the next option, line break or turn marker)."""
        links = self.config.option_links
        turns = [q for q, t in enumerate(seq) if t == links["turn"]]
        out = []
        for q in (q for q in range(1, len(seq) - 1) if self._is_option_letter(seq, q)):
            start = max((t for t in turns if t < q), default=None)
            if start is not None and start + 1 < len(seq) and seq[start + 1] == links["assistant"]:
                continue  # an answer's own "(B) red"
            span = []
            for r in range(q + 2, min(len(seq), q + 2 + max_words)):
                if seq[r] in self._option_stops or self._is_option_letter(seq, r + 1):
                    break
                span.append(r)
            if span:
                out.append((q, span))
        return out

    def _is_option_letter(self, seq: Sequence[int], q: int) -> bool:
        """Position `q` holds the letter of "(X)"."""
        return (0 < q < len(seq) - 1 and seq[q - 1] in self._option_open and seq[q] in self._option_letters
                and seq[q + 1] in self._option_close)

    def option_turns(self, seq: Sequence[int]) -> dict[int, tuple[list[int], list[int], int]]:
        """`config.option_pointer`: each assistant turn that answers a user turn with options -> (the options' letter
        positions, their letter token ids, the turn's end), keyed by the turn's `<|im_start|>` position."""
        links = self.config.option_links
        turns = [q for q, t in enumerate(seq) if t == links["turn"]]
        by_turn: dict[int, list[int]] = {}
        for q, _ in self.option_spans(seq):
            by_turn.setdefault(max(t for t in turns if t < q) if turns and turns[0] < q else -1, []).append(q)
        out = {}
        for i, t in enumerate(turns):
            before = turns[i - 1] if i else -1
            if t + 1 < len(seq) and seq[t + 1] == links["assistant"] and before in by_turn:
                end = turns[i + 1] if i + 1 < len(turns) else len(seq)
                out[t] = (by_turn[before], [seq[q] for q in by_turn[before]], end)
        return out

    def option_scores(self, state: torch.Tensor, letter_states: torch.Tensor) -> torch.Tensor:
        """`config.option_pointer`: the pointer's logits [..., n] over n options, from the state before the letter
        [..., D] and the options' letter states [n, D]."""
        keys = self.option_key(letter_states)
        return self.option_query(state) @ keys.T / keys.shape[-1] ** 0.5

    def open_turn_options(self, seq: Sequence[int], pre: UniPixelOutput) -> tuple[list[int], torch.Tensor] | None:
        """`config.option_pointer`: for a prompt ending in an assistant turn that answers options (the generation
        prompt) -> (their letter token ids, their letter states from the prefill); None otherwise."""
        turns = self.option_turns(seq)
        last = max(turns, default=None)
        if last is None or turns[last][2] != len(seq):
            return None
        positions, letters, _ = turns[last]
        if min(positions) < pre.prefix_length:  # the options' states come from a reused prefix: not available
            return None
        return letters, pre.prenorm_hidden[[p - pre.prefix_length for p in positions]]

    def pointed_letter(self, prev: int, state: torch.Tensor, options: tuple[list[int], torch.Tensor] | None
                       ) -> int | None:
        """The option letter the pointer picks where the previous token opens an option (`(`), else None."""
        if options is None or prev not in self._option_open:
            return None
        letters, letter_states = options
        return letters[int(self.option_scores(state, letter_states).argmax())]

    def region_number(self, seq: Sequence[int], q: int) -> int | None:
        """`config.region_mentions`: the region number written at position `q` (a number token right after `[`)."""
        if q < 1 or seq[q - 1] not in self._mention_open:
            return None
        return self._mention_digits.get(seq[q])

    def region_table(self, seq: Sequence[int], slots: Sequence[tuple[torch.Tensor, torch.Tensor | None]]
                     ) -> dict[int, torch.Tensor]:
        """`config.region_mentions`: region number -> the mean embedding of its slots. Each slot (the positions of
        `<|ref|>` / `<|mem|>` tokens with their embeddings) belongs to the nearest `[k` before it: `[k] <|ref|>` in a
        question, `[k]: <|mem|>` (or `[k]: <1>-<2> <|mem|> ...`) in the regions prefix."""
        groups: dict[int, list[torch.Tensor]] = {}
        for positions, embeds in slots:
            if embeds is None:
                continue
            for p, e in zip(positions.tolist(), embeds):
                k = next((k for q in range(p - 1, 0, -1) if (k := self.region_number(seq, q)) is not None), None)
                if k is not None:
                    groups.setdefault(k, []).append(e)
        return {k: torch.stack(v).mean(0) for k, v in groups.items()}

    def mention_step(self, emb: torch.Tensor, prev: int, tok: int, mentions: dict[int, torch.Tensor]) -> torch.Tensor:
        """A decoding step's token embedding [.., D] with its region's embedding added where the model has just
        written `[k` (`config.region_mentions`; unchanged otherwise)."""
        if not mentions or prev not in self._mention_open:
            return emb
        k = self._mention_digits.get(tok)
        return emb if k not in mentions else emb + (mentions[k] * self.mention_gate).to(emb.dtype)

    def later_frames(self, features: Any, num_frames: int | None = None) -> list[Any]:
        """The SAM2 features of the clip's `spread_frames` (models with `config.seg_key_motion`; else none) from an
        indexable frame source of `num_frames` frames (default: its length)."""
        if not self.config.seg_key_motion:
            return []
        if callable(features):
            raise PromptError("this model's keys track the proposals over the clip: pass the sampled frames' features")
        n = len(features) if num_frames is None else num_frames
        return [features[t] for t in spread_frames(n)]

    def frame_objects(self, inputs: UniPixelInputs, video_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`config.llm_object_view`: `object_proposals` on the first frame (and the spread frames, with
        `seg_key_motion`), SAM2-encoded here unless `inputs.sam2_features` holds them (SAM2 is frozen in every tiny
        recipe)."""
        if inputs.sam2_frames is None:
            raise PromptError("this model shows its LLM the objects SAM2 proposes: the inputs need sam2_frames")
        n = inputs.sam2_frames.shape[0]
        picks = [0, *spread_frames(n)] if self.config.seg_key_motion else [0]
        if inputs.sam2_features is not None:
            feats = [inputs.sam2_features[i] for i in picks]
        else:
            feats = self.require_sam2().encode_frames(inputs.sam2_frames[picks].to(self.device, self.dtype))
        visual = self.retrieval_visual(video_embeds, inputs.video_grid_thw)
        return self.object_proposals(feats[0], visual, [feats[i] for i in range(1, len(picks))])

    def objects_on_tokens(self, desc: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """Descriptors on the SAM2 cell grid [h*w, W] -> on the first frame pair's visual tokens [gh*gw, W] (resized
        when the grids differ), raster order."""
        gh, gw = (int(v) // self.config.spatial_merge_size for v in grid_thw.reshape(-1, 3)[0, 1:])
        n = int(desc.shape[0] ** 0.5)
        grid = desc.T.reshape(1, -1, n, n)
        if (n, n) != (gh, gw):
            grid = F.interpolate(grid, size=(gh, gw), mode="bilinear", align_corners=False)
        return grid[0].flatten(1).T

    def own_frame_objects(self, inputs: UniPixelInputs, video_embeds: torch.Tensor) -> dict[int, torch.Tensor]:
        """`config.region_own_frame`: for each later frame pair (t > 0) on which a `<|mem|>` region starts, the
        descriptors of the proposals made on the pair's first frame, on that pair's visual tokens [gh*gw, W]
        (`objects_on_tokens`), keyed by t. The frames are `inputs.region_frames` (training thins `sam2_frames`), else
        `sam2_frames[2t]`; SAM2 features already computed (`inputs.sam2_features`, all frames) are reused."""
        starts = inputs.refer_mask.flatten(2).any(2)  # [T/2, O]
        pairs = sorted({int(starts[:, o].nonzero()[0]) for o in range(starts.shape[1]) if starts[:, o].any()} - {0})
        if not pairs:
            return {}
        tp = self.config.temporal_patch_size
        every = inputs.sam2_frames is not None and inputs.sam2_frames.shape[0] == inputs.num_frames
        if inputs.region_frames is not None:
            frames = inputs.region_frames[pairs]
        elif every:
            frames = inputs.sam2_frames[[tp * t for t in pairs]]
        else:
            raise PromptError("this model describes a region on its own frame: the inputs need every frame pair's "
                              "first frame (sam2_frames of all frames, or region_frames)")
        if inputs.sam2_features is not None and every:
            feats = [inputs.sam2_features[tp * t] for t in pairs]
        else:
            feats = self.require_sam2().encode_frames(frames.to(self.device, self.dtype))
            feats = [feats[i] for i in range(len(pairs))]
        visual = self.retrieval_visual(video_embeds, inputs.video_grid_thw, every_pair=True)
        return {t: self.objects_on_tokens(self.object_proposals(feat, visual[t])[1], inputs.video_grid_thw)
                for t, feat in zip(pairs, feats)}

    @staticmethod
    def region_descriptors(on_tokens: torch.Tensor, refer_mask: torch.Tensor,
                           own: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Descriptors on the first frame pair's tokens (`objects_on_tokens`) -> one row [M, W] per `<|mem|>` slot
        (objects outer, non-empty frame pairs inner, as `pool_memory`): the mean descriptor under the object's mask on
        the first frame pair; for an object absent there, under its mask on the first pair t it is on when `own`
        (`own_frame_objects`) has that pair's descriptors, else zeros."""
        rows = []
        for o in range(refer_mask.shape[1]):
            on = refer_mask[:, o].flatten(1).any(1)
            t = int(on.nonzero()[0]) if on.any() else 0
            table = on_tokens if t == 0 else (own or {}).get(t)
            cells = refer_mask[t, o].reshape(-1).to(on_tokens.device)
            row = table[cells].mean(0) if table is not None and cells.any() else on_tokens.new_zeros(on_tokens.shape[-1])
            rows += [row] * int(on.sum())
        return torch.stack(rows) if rows else on_tokens.new_zeros(0, on_tokens.shape[-1])

    def _run_llm(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor, past_key_values: Any = None,
                 attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """LLM forward -> (logits [B, L, V], pre-norm hidden [B, L, D], cache); `attention_mask` [B, cached + L]
        (1 = a real token) for left-padded batches."""
        captured: dict[str, torch.Tensor] = {}

        def hook(_module, args):
            captured["x"] = args[0]

        handle = self.language_model.norm.register_forward_pre_hook(hook)
        try:
            out = self.language_model(inputs_embeds=inputs_embeds, position_ids=position_ids,
                                      past_key_values=past_key_values, use_cache=True, attention_mask=attention_mask)
        finally:
            handle.remove()
        return self.lm_head(out.last_hidden_state), captured["x"], out.past_key_values

    def positions(self, inputs: UniPixelInputs) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        return mrope_position_ids(
            inputs.input_ids, inputs.video_grid_thw, inputs.second_per_grid_ts, video_token_id=cfg.video_token_id,
            vision_start_token_id=cfg.vision_start_token_id, spatial_merge_size=cfg.spatial_merge_size,
            tokens_per_second=cfg.tokens_per_second,
        )

    def forward(self, inputs: UniPixelInputs, prefix: PrefixCache | None = None) -> UniPixelOutput:
        """Prefill: logits and pre-norm states for every prompt position (teacher forcing when the text has an answer).

        With `prefix`, the positions the prompt shares with the cached tokens are not recomputed (see
        `UniPixelOutput.prefix_length`). Differentiable (no `no_grad` here) so training can reuse it; inference entry
        points disable gradients.
        """
        embeds, info = self.embed(inputs)
        pos, delta = self.positions(inputs)
        ids = inputs.input_ids.reshape(-1)
        start, cache = _reuse_prefix(prefix, ids)
        logits, prenorm, cache = self._run_llm(embeds[:, start:], pos[:, start:].unsqueeze(1).to(self.device), cache)
        info.logits, info.prenorm_hidden = logits[0], prenorm[0]
        info.position_ids, info.rope_delta, info.past_key_values = pos, int(delta), cache
        info.seg_positions = [i for i in (ids[1:] == self.config.seg_token_id).nonzero().flatten().tolist() if i >= start]
        info.prefix_length = start
        return info

    @torch.no_grad()
    def generate(self, inputs: UniPixelInputs, max_new_tokens: int = 512,
                 stop_token_ids: Sequence[int] | None = None, prefix: PrefixCache | None = None,
                 require_seg: bool = False) -> GenerationOutput:
        """Greedy decoding (pure argmax, as the official evaluation) with the 4.53.3 decoding positions.

        A `<|seg|>` chosen at a step takes the pre-norm state of the position that predicted it. `prefix` (the
        `cache` of the previous turn) skips recomputing the positions the prompt shares with it; teacher-forced
        `<|seg|>` inside that shared part are then not collected again. `require_seg` (segmentation requests of a
        model with `segment_forces_seg`): a stop token chosen before the answer has a `<|seg|>` becomes `<|seg|>`.
        """
        if stop_token_ids is None:
            stop_token_ids = self.default_stop_token_ids()
        stops = {int(s) for s in stop_token_ids}
        pre = self.forward(inputs, prefix=prefix)
        length = int(inputs.input_ids.numel())
        seg_states = [pre.prenorm_hidden[i - pre.prefix_length] for i in pre.seg_positions]
        seg_index = [-1] * len(seg_states)
        logits, prenorm, cache = pre.logits[-1], pre.prenorm_hidden[-1], pre.past_key_values
        prev = int(inputs.input_ids.reshape(-1)[-1])
        options = (self.open_turn_options(inputs.input_ids.reshape(-1).tolist(), pre) if self.config.option_pointer
                   else None)
        new_ids, step_logits, step_prenorm = [], [], []
        seg_id = self.config.seg_token_id
        for step in range(max_new_tokens):
            tok = self.next_token(int(torch.argmax(logits)), prev, prenorm, options, new_ids, stops,
                                  require_seg and step < max_new_tokens - 1)
            new_ids.append(tok)
            step_logits.append(logits)
            step_prenorm.append(prenorm)
            if tok == seg_id:
                seg_states.append(prenorm)
                seg_index.append(step)
            if tok in stops or step == max_new_tokens - 1:
                break
            emb = self.language_model.embed_tokens(torch.tensor([[tok]], device=self.device))
            if pre.mentions:
                emb = self.mention_step(emb, prev, tok, pre.mentions)
            prev = tok
            pos = decode_position_ids(length + step, pre.rope_delta).to(self.device)
            out_logits, out_prenorm, cache = self._run_llm(emb, pos, cache)
            logits, prenorm = out_logits[0, -1], out_prenorm[0, -1]
        d = self.config.hidden_size
        return GenerationOutput(
            prompt_length=length,
            generated_ids=torch.tensor(new_ids, dtype=torch.int64),
            step_logits=torch.stack(step_logits),
            step_prenorm_hidden=torch.stack(step_prenorm),
            seg_states=torch.stack(seg_states) if seg_states else pre.prenorm_hidden.new_zeros(0, d),
            seg_token_index=seg_index,
            prefill=pre,
            cache=PrefixCache(torch.cat([inputs.input_ids.reshape(-1).cpu(), torch.tensor(new_ids[:-1],
                                                                                          dtype=torch.int64)]), cache),
            seg_words=self._generated_seg_words(inputs.input_ids, new_ids, pre.seg_positions, seg_index),
        )

    def next_token(self, greedy: int, prev: int, prenorm: torch.Tensor, options: Any, ids: Sequence[int],
                   stops: set[int], require_seg: bool) -> int:
        """The token a decoding step emits: the greedy choice, unless the option pointer picks a letter
        (`pointed_letter`), or `require_seg` turns a stop chosen before any `<|seg|>` of the answer `ids` into one."""
        tok = greedy
        if options is not None and (pick := self.pointed_letter(prev, prenorm, options)) is not None:
            tok = pick
        if require_seg and tok in stops and self.config.seg_token_id not in ids:
            tok = self.config.seg_token_id
        return tok

    @torch.no_grad()
    def generate_batch(self, batch: Sequence[UniPixelInputs], max_new_tokens: int | Sequence[int] = 512,
                       stop_token_ids: Sequence[int] | None = None,
                       require_seg: bool | Sequence[bool] = False) -> list[GenerationOutput]:
        """`generate` for several prompts at once (different media, different lengths): one left-padded prefill with
        an attention mask and each prompt's own MRoPE positions, then one decoding step per token for all prompts
        that have not stopped. The answers are those of `generate` one by one (the same greedy choices; the
        numbers within float tolerance, since a padded matrix product sums in another order). No prefix reuse.
        `max_new_tokens` and `require_seg` (as in `generate`) may be one value per prompt."""
        limits = [int(max_new_tokens)] * len(batch) if isinstance(max_new_tokens, int) else [int(m) for m in max_new_tokens]
        if len(limits) != len(batch):
            raise PromptError(f"{len(limits)} max_new_tokens limits for {len(batch)} prompts")
        force = [bool(require_seg)] * len(batch) if isinstance(require_seg, bool) else [bool(r) for r in require_seg]
        if len(force) != len(batch):
            raise PromptError(f"{len(force)} require_seg flags for {len(batch)} prompts")
        if len(batch) == 1:
            return [self.generate(batch[0], max_new_tokens=limits[0], stop_token_ids=stop_token_ids,
                                  require_seg=force[0])]
        if stop_token_ids is None:
            stop_token_ids = self.default_stop_token_ids()
        stops = {int(s) for s in stop_token_ids}
        embeds, infos, positions, ids = [], [], [], []
        for inputs in batch:
            e, info = self.embed(inputs)
            pos, delta = self.positions(inputs)
            embeds.append(e[0])
            infos.append(info)
            positions.append(pos)
            info.position_ids, info.rope_delta = pos, int(delta)
            ids.append(inputs.input_ids.reshape(-1))
        lengths = [int(x.numel()) for x in ids]
        n, width = len(batch), max(lengths)
        x = embeds[0].new_zeros(n, width, embeds[0].shape[-1])
        pos = torch.zeros(3, n, width, dtype=torch.int64)
        mask = torch.zeros(n, width, dtype=torch.int64)
        for b, (e, p, length) in enumerate(zip(embeds, positions, lengths)):
            x[b, width - length:], pos[:, b, width - length:], mask[b, width - length:] = e, p, 1
        mask = mask.to(self.device)
        logits, prenorm, cache = self._run_llm(x, pos.to(self.device), attention_mask=mask)
        seg_id = self.config.seg_token_id
        seg_states: list[list[torch.Tensor]] = []
        seg_index: list[list[int]] = []
        for b, (info, length) in enumerate(zip(infos, lengths)):
            info.logits, info.prenorm_hidden = logits[b, width - length:], prenorm[b, width - length:]
            info.seg_positions = (ids[b][1:] == seg_id).nonzero().flatten().tolist()
            seg_states.append([info.prenorm_hidden[i] for i in info.seg_positions])
            seg_index.append([-1] * len(info.seg_positions))
        step_logits: list[list[torch.Tensor]] = [[] for _ in batch]
        step_prenorm: list[list[torch.Tensor]] = [[] for _ in batch]
        new_ids: list[list[int]] = [[] for _ in batch]
        last_logits, last_prenorm = logits[:, -1], prenorm[:, -1]
        prev = [int(x[-1]) for x in ids]
        options = [self.open_turn_options(x.tolist(), info) if self.config.option_pointer else None
                   for x, info in zip(ids, infos)]
        live = list(range(n))
        for step in range(max(limits)):
            toks = last_logits.argmax(-1).tolist()
            for b in live:
                toks[b] = self.next_token(toks[b], prev[b], last_prenorm[b], options[b], new_ids[b], stops,
                                          force[b] and step < limits[b] - 1)
            for b in live:
                tok = toks[b]
                new_ids[b].append(tok)
                step_logits[b].append(last_logits[b])
                step_prenorm[b].append(last_prenorm[b])
                if tok == seg_id:
                    seg_states[b].append(last_prenorm[b])
                    seg_index[b].append(step)
            live = [b for b in live if toks[b] not in stops and step < limits[b] - 1]
            if not live:
                break
            # every row steps (the cache stays rectangular); a finished row's token is never read again
            emb = self.language_model.embed_tokens(torch.tensor(toks, device=self.device)[:, None])
            for b, info in enumerate(infos):
                if info.mentions:
                    emb[b] = self.mention_step(emb[b], prev[b], toks[b], info.mentions)
            prev = toks
            step_pos = torch.cat([decode_position_ids(length + step, info.rope_delta)
                                  for length, info in zip(lengths, infos)], 1).to(self.device)
            mask = torch.cat([mask, mask.new_ones(n, 1)], 1)
            out_logits, out_prenorm, cache = self._run_llm(emb, step_pos, cache, attention_mask=mask)
            last_logits, last_prenorm = out_logits[:, -1], out_prenorm[:, -1]
        d = self.config.hidden_size
        return [
            GenerationOutput(
                prompt_length=lengths[b],
                generated_ids=torch.tensor(new_ids[b], dtype=torch.int64),
                step_logits=torch.stack(step_logits[b]),
                step_prenorm_hidden=torch.stack(step_prenorm[b]),
                seg_states=torch.stack(seg_states[b]) if seg_states[b] else prenorm.new_zeros(0, d),
                seg_token_index=seg_index[b],
                prefill=infos[b],
                seg_words=self._generated_seg_words(ids[b], new_ids[b], infos[b].seg_positions, seg_index[b]),
            )
            for b in range(n)
        ]

    def default_stop_token_ids(self) -> list[int]:
        """`eos_token_id` of the checkpoint's generation_config.json (official: `<|im_end|>`, `<|endoftext|>`),
        else of config.json."""
        ids = self.stop_token_ids if self.stop_token_ids is not None else self.config.raw.get("eos_token_id")
        ids = ids if isinstance(ids, list) else [ids]
        return [int(i) for i in ids if i is not None]

    # ------------------------------------------------------------------ segmentation

    def require_sam2(self) -> nn.Module:
        if self.sam2 is None:
            raise CheckpointError(f"segmentation unavailable: {self.sam2_unavailable}")
        return self.sam2

    @torch.no_grad()
    def segment(self, seg_states: torch.Tensor, sam2_frames: torch.Tensor | None, frame_size: tuple[int, int],
                features: Any = None, visual: torch.Tensor | None = None,
                words: torch.Tensor | None = None) -> SegmentationOutput:
        """Pre-norm states behind the `<|seg|>` tokens [O, D] -> masks [O, T, H, W].

        All objects are tracked as one SAM2 batch; the frames are encoded once and shared by every object.
        `features` (the `features` of an earlier `SegmentationOutput` for the same frames) skips the encoding, e.g.
        across the turns of a chat about one clip. `visual`: `retrieval_visual(...)` of the frames (models with
        `seg_key_visual`); `words`: `seg_words` of the states (models with `seg_ground_words`).
        """
        sam2 = self.require_sam2()
        if features is not None:
            feats = features
        elif sam2_frames is None:
            raise PromptError("segmentation needs the SAM2 frames (or their cached features)")
        else:
            feats = sam2.encode_frames(sam2_frames.to(self.device, self.dtype))
        prompts, _ = self.seg_prompts(seg_states.to(self.device), feats[0], visual, later=self.later_frames(feats),
                                      words=words)
        out = sam2.track(feats, prompts, frame_size=tuple(int(v) for v in frame_size), cond_frame=0)
        return SegmentationOutput(prompt_tokens=prompts, masks=out.masks, mask_logits=out.mask_logits, sam2=out,
                                  features=feats)

    @torch.no_grad()
    def segment_frames(self, seg_states: torch.Tensor, features: Any, frame_size: tuple[int, int] | None,
                       num_frames: int | None = None, visual: torch.Tensor | None = None,
                       later: Sequence[Any] | None = None,
                       objects: tuple[torch.Tensor, torch.Tensor] | None = None,
                       words: torch.Tensor | None = None) -> Iterator[Any]:
        """Streaming `segment`: yields SAM2's `Sam2FrameOutput` frame by frame, all objects as one batch.

        `features` is any SAM2 frame source: `Sam2Features` of encoded frames, or a callable `t -> Sam2FrameFeatures`
        (with `num_frames`) that encodes frame t when tracking reaches it, so a long clip is decoded, encoded and
        segmented in one pass without holding its frames or its logits. `later`: `later_frames(...)` of the sampled
        frames, needed with a callable source when `config.seg_key_motion` (default: from `features`); `objects`
        the prefill's `UniPixelOutput.objects` (`config.llm_object_view`), so the proposals are not made twice;
        `words`: `seg_words` of the states (`config.seg_ground_words`).
        """
        sam2 = self.require_sam2()
        size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        if self.config.seg_retrieval_dim:  # the prompt needs frame 0's features: read them once, hand them on
            get = features if callable(features) else features.__getitem__
            first = get(0)
            if later is None:
                later = self.later_frames(features, num_frames)
            prompts, _ = self.seg_prompts(seg_states.to(self.device), first, visual, later=later, objects=objects,
                                          words=words)
            source = (lambda t: first if t == 0 else get(t)) if callable(features) else features
            yield from sam2.track_frames(source, prompts, size, cond_frame=0, num_frames=num_frames)
            return
        prompts = self.seg_prompt_tokens(seg_states.to(self.device))
        yield from sam2.track_frames(features, prompts, size, cond_frame=0, num_frames=num_frames)

    def region_frames(self, prompts: Sequence[RefPrompt], features: Any, frame_size: tuple[int, int] | None,
                      num_frames: int) -> Iterator[tuple[int, Any]]:
        """SAM2 prompted directly by point/box regions (`config.region_prompts_to_sam2`): yields (region index, frame
        output) as each region is tracked forward from its own frame, then back from it to frame 0 (SAM2's reverse
        propagation), so a region given on a later frame has masks on the whole clip, as the official `<|seg|>`
        prompt on frame 0 does. Until session 13 the frames before it stayed empty."""
        sam2 = self.require_sam2()
        size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        for k, p in enumerate(prompts):
            coords, labels = p.coords.to(self.device, self.dtype), p.labels.to(self.device)
            if coords.shape[1] == 1:  # a click is 2 tokens in SAM2's prompt training: the point + a not-a-point
                coords = torch.cat([coords, coords.new_zeros(1, 1, 2)], 1)
                labels = torch.cat([labels, -labels.new_ones(1, 1)], 1)
            tokens = sam2.sam_prompt_encoder.embed_points(coords, labels, pad=False)
            for out in sam2.track_frames(features, tokens, size, cond_frame=int(p.frame), num_frames=num_frames):
                yield k, out
            if p.frame > 0:
                back = sam2.track_frames(features, tokens, size, cond_frame=int(p.frame), num_frames=num_frames,
                                         reverse=True)
                next(back)  # the prompted frame again
                for out in back:
                    yield k, out

    @torch.no_grad()
    def predict(self, inputs: UniPixelInputs, max_new_tokens: int = 512,
                stop_token_ids: Sequence[int] | None = None, include_prompt_segs: bool = True,
                sam2_features: Any = None) -> Prediction:
        """Answer a query: greedy text, then one mask track per `<|seg|>`, all objects as one SAM2 batch.

        The official model also segments `<|seg|>` tokens already in the prompt (earlier turns, teacher forcing);
        `include_prompt_segs=False` keeps only those of the new answer (a chat turn then costs one SAM2 batch for
        the new objects). `seg_token_index[k]` is the index of object k's token in `generated_ids` (-1 = prompt).
        `sam2_features` reuses the frame encoding of an earlier query on the same frames.
        """
        gen = self.generate(inputs, max_new_tokens=max_new_tokens, stop_token_ids=stop_token_ids)
        keep = [k for k, i in enumerate(gen.seg_token_index) if include_prompt_segs or i >= 0]
        seg = None
        if keep:
            visual = self.retrieval_visual(gen.prefill.video_embeds, inputs.video_grid_thw)
            seg = self.segment(gen.seg_states[keep], inputs.sam2_frames, inputs.frame_size, features=sam2_features,
                               visual=visual, words=gen.seg_words[keep] if gen.seg_words is not None else None)
        return Prediction(generated_ids=gen.generated_ids, seg_token_index=[gen.seg_token_index[k] for k in keep],
                          segmentation=seg, generation=gen)


def _reuse_prefix(prefix: PrefixCache | None, ids: torch.Tensor) -> tuple[int, Any]:
    """(positions of `ids` covered by the cache, the cache cropped to them) — (0, None) without a usable prefix.

    At least the last prompt position is always recomputed: its logits start the answer.
    """
    if prefix is None or prefix.past_key_values is None:
        return 0, None
    cached = prefix.input_ids.reshape(-1).cpu()
    mine = ids.reshape(-1).cpu()
    n = min(len(cached), len(mine) - 1, int(prefix.past_key_values.get_seq_length()))
    differs = (cached[:n] != mine[:n]).nonzero()
    start = int(differs[0]) if differs.numel() else n
    if start == 0:
        return 0, None
    extra = int(prefix.past_key_values.get_seq_length()) - start
    if extra:
        prefix.past_key_values.crop(-extra)
    return start, prefix.past_key_values


def _generation_stop_ids(path: Path) -> list[int] | None:
    file = path / "generation_config.json"
    if not file.is_file():
        return None

    data = read_json(file, CheckpointError)
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: must be a JSON object, got {type(data).__name__}")
    ids = data.get("eos_token_id")
    if ids is None:
        return None
    return [int(i) for i in (ids if isinstance(ids, list) else [ids])]


def local_soft_argmax(logits: torch.Tensor, h: int, w: int, image_size: int, radius: int = 1) -> torch.Tensor:
    """Logits [O, h*w] over grid cells -> points [O, 2] (x, y in pixels of the S x S frame): the softmax-weighted
    centre of the cells within `radius` of the best cell (a global soft-argmax would land between two candidates)."""
    dev = logits.device
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    best = logits.detach().argmax(-1)
    near = ((ys[None] - ys[best][:, None]).abs() <= radius) & ((xs[None] - xs[best][:, None]).abs() <= radius)
    p = torch.softmax(logits.masked_fill(~near, float("-inf")), -1)
    centres = torch.stack([(xs + 0.5) * image_size / w, (ys + 0.5) * image_size / h], -1).to(logits.dtype)
    return p @ centres


def _rms_norm(dim: int, eps: float) -> nn.Module:
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRMSNorm

    return Qwen2_5_VLRMSNorm(dim, eps=eps)
