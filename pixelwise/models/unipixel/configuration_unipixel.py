"""`UniPixelConfig`: reads the official `config.json` of a UniPixel checkpoint (model_type `pixel_qwen2_5_vl`).

The official checkpoints were written by transformers 4.53.3, so the Qwen2.5-VL part is stored *flat* at the top level
(`hidden_size`, `num_hidden_layers`, `rope_scaling`, ...) next to a `vision_config`, plus the UniPixel keys
(`sam2_config`, `sam2_image_size`, `sam2_hidden_tokens`, `ref_token_id`, `seg_token_id`, `mem_token_id`, ...).
We keep the whole JSON (`raw`) so that a checkpoint saved by us round-trips every key, and derive from it the
transformers 5.x sub-configs that build the Qwen2.5-VL vision tower and text model.

SAM2: `sam2_config` names one of the official hydra configs (`configs/sam2.1_hiera_{t,s,b+,l}`), which map to built-in
presets; an explicit `sam2_arch` dict (written by the conformance generator and by our own tiny models) describes any
other size. The SAM2 module itself interprets those keys (`Sam2Config.from_unipixel_config`); this class only needs
the SAM2 width, which sizes the UniPixel adapters.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixelwise.core.checkpoint import Field, check_config_fields, check_token_ids
from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.core.io import atomic_write_text, read_json

MODEL_TYPE = "pixel_qwen2_5_vl"

# Hidden (prompt/mask-decoder) width of the official SAM 2.1 presets: all four sizes use 256.
SAM2_PRESET_HIDDEN_DIM = {"t": 256, "s": 256, "b+": 256, "l": 256}
_PRESET_RE = re.compile(r"hiera_(t|s|b\+|l)(?:\.yaml)?$")

# Qwen2.5-VL chat/vision special tokens we need by name (ids are read from config.json, never hard-coded).
_TOKEN_ID_KEYS = (
    "ref_token_id",
    "seg_token_id",
    "mem_token_id",
    "video_token_id",
    "image_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
)


def sam2_preset_name(sam2_config: str | None) -> str | None:
    """`configs/sam2.1_hiera_b+` -> `b+` (None when the name is not one of the official presets)."""
    if not sam2_config:
        return None
    m = _PRESET_RE.search(str(sam2_config).strip())
    return m.group(1) if m else None


@dataclass
class UniPixelConfig:
    """Typed view over the official `config.json`; `raw` keeps every key for saving."""

    raw: dict[str, Any] = field(repr=False)

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> UniPixelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object")
        cfg = cls(raw=copy.deepcopy(data))
        cfg.validate(source)
        return cfg

    @classmethod
    def from_pretrained(cls, path: str | Path) -> UniPixelConfig:
        path = Path(path)
        file = path / "config.json" if path.is_dir() else path
        if not file.exists():
            raise CheckpointError(f"{path}: no config.json")

        return cls.from_dict(read_json(file, ConfigError), source=str(file))

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)

    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        return atomic_write_text(path / "config.json", json.dumps(self.raw, indent=2, sort_keys=True) + "\n")

    def validate(self, source: str = "config") -> None:
        mt = self.raw.get("model_type")
        if mt != MODEL_TYPE:
            raise ConfigError(f"{source}: model_type is {mt!r}, expected {MODEL_TYPE!r} (a UniPixel checkpoint)")
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "vision_config"):
            if key not in self._text_source() and key not in self.raw:
                raise ConfigError(f"{source}: missing key {key!r}")
        self._check_sizes(source)
        for key in _TOKEN_ID_KEYS:
            if key in ("image_token_id",):
                continue
            if not isinstance(self.raw.get(key), int):
                raise ConfigError(f"{source}: {key!r} must be an integer token id, got {self.raw.get(key)!r}")
        section = self.mrope_section
        head_dim = self.hidden_size // self.num_attention_heads
        if sum(section) * 2 != head_dim:
            raise ConfigError(f"{source}: mrope_section {section} must sum to head_dim/2 = {head_dim // 2}")
        if self.has_sam2:
            if self.sam2_arch is None and sam2_preset_name(self.raw.get("sam2_config")) is None:
                raise ConfigError(
                    f"{source}: sam2_config {self.raw.get('sam2_config')!r} is not an official preset "
                    "(sam2.1_hiera_t/s/b+/l) and no sam2_arch is given"
                )
            if not isinstance(self.sam2_image_size, int) or self.sam2_image_size % 16:
                raise ConfigError(f"{source}: sam2_image_size must be a multiple of 16, got {self.sam2_image_size!r}")

    def _check_sizes(self, source: str) -> None:
        """Types and ranges of the sizes that allocate tensors, and token ids inside the vocabulary (core helpers)."""

        dim, count = Field(int, 1, 1 << 16), Field(int, 1, 4096)
        text = self._text_source()
        check_config_fields(text, {"hidden_size": dim, "num_hidden_layers": count, "num_attention_heads": count,
                                   "vocab_size": Field(int, 1, 1 << 22), "intermediate_size": Field(int, 1, 1 << 18),
                                   "num_key_value_heads": Field(int, 1, 4096, required=False)}, source)
        if text["hidden_size"] % text["num_attention_heads"]:
            raise ConfigError(f"{source}: hidden_size {text['hidden_size']} is not divisible by "
                              f"num_attention_heads {text['num_attention_heads']}")
        vision = self.raw["vision_config"]
        if not isinstance(vision, dict):
            raise ConfigError(f"{source}: 'vision_config' must be an object")
        check_config_fields(vision, {"depth": count, "hidden_size": dim, "num_heads": count, "patch_size": Field(int, 1, 1024),
                                     "spatial_merge_size": Field(int, 1, 64),
                                     "temporal_patch_size": Field(int, 1, 64, required=False)}, f"{source}: vision_config")
        check_token_ids(self.raw, _TOKEN_ID_KEYS + ("bos_token_id", "eos_token_id"), text["vocab_size"], source)
        check_config_fields(self.raw, {"vision_abs_pos": Field(int, 0, 1024, required=False),
                                       "seg_retrieval_dim": Field(int, 0, 1 << 14, required=False),
                                       "seg_key_objects": Field(int, 0, 4096, required=False),
                                       "seg_rerank": Field(int, 0, 16, required=False),
                                       "seg_ground": Field(int, 0, 16, required=False),
                                       "seg_ground_width": Field(int, 8, 4096, required=False),
                                       "seg_ground_words": Field(int, 0, 512, required=False),
                                       "seg_grid": Field(int, 0, 64, required=False)}, source)
        if self.raw.get("seg_rerank") and not self.raw.get("seg_retrieval_dim"):
            raise ConfigError(f"{source}: seg_rerank needs seg_retrieval_dim (the retrieval scores it refines)")
        if self.raw.get("seg_ground") and not self.raw.get("seg_key_objects"):
            raise ConfigError(f"{source}: seg_ground needs seg_key_objects (the object descriptors it reads)")
        if self.raw.get("seg_ground_eyes") and not self.raw.get("seg_ground"):
            raise ConfigError(f"{source}: seg_ground_eyes needs seg_ground (the head whose cells it adds to)")
        if self.raw.get("seg_ground_words") and not self.raw.get("seg_ground"):
            raise ConfigError(f"{source}: seg_ground_words needs seg_ground (the head that reads the words)")
        if self.raw.get("seg_ground_geometry") and not self.raw.get("seg_ground"):
            raise ConfigError(f"{source}: seg_ground_geometry needs seg_ground (the head whose cells it adds to)")
        if self.raw.get("seg_grid") and not self.raw.get("seg_key_objects"):
            raise ConfigError(f"{source}: seg_grid needs seg_key_objects (the proposals it clicks on the finer grid)")
        if self.raw.get("seg_ground_width", 96) % 4:
            raise ConfigError(f"{source}: seg_ground_width must be a multiple of 4 (its 4 attention heads), got "
                              f"{self.raw.get('seg_ground_width')}")
        if self.raw.get("seg_key_objects") and not (self.raw.get("seg_retrieval_dim") and self.raw.get("seg_key_visual")):
            raise ConfigError(f"{source}: seg_key_objects needs seg_retrieval_dim and seg_key_visual")
        if self.raw.get("seg_key_pixels") and not self.raw.get("seg_key_objects"):
            raise ConfigError(f"{source}: seg_key_pixels needs seg_key_objects (the proposals it describes)")
        if self.raw.get("seg_key_words") and not self.raw.get("seg_retrieval_dim"):
            raise ConfigError(f"{source}: seg_key_words needs seg_retrieval_dim (the keys it names)")
        if self.raw.get("seg_key_motion") and not self.raw.get("seg_key_objects"):
            raise ConfigError(f"{source}: seg_key_motion needs seg_key_objects (the proposals it tracks)")
        if self.raw.get("llm_object_view") and not self.raw.get("seg_key_objects"):
            raise ConfigError(f"{source}: llm_object_view needs seg_key_objects (the descriptors it shows the LLM)")
        if self.raw.get("region_own_frame") and not self.raw.get("llm_object_view"):
            raise ConfigError(f"{source}: region_own_frame needs llm_object_view (the descriptors it gives `<|mem|>`)")
        links = self.raw.get("option_links")
        keys = {"open": list, "letters": list, "close": list, "stops": list, "turn": int, "assistant": int}
        if links is not None and not (isinstance(links, dict) and set(links) == set(keys)
                                      and all(isinstance(links[k], t) for k, t in keys.items())):
            raise ConfigError(f"{source}: option_links must be {{{', '.join(keys)}}} token ids (recipes write "
                              "`option_links: true` and get the tokenizer's ids)")
        check_config_fields(self.raw, {"option_pointer": Field(int, 0, 4096, required=False)}, source)
        if self.raw.get("option_pointer") and not links:
            raise ConfigError(f"{source}: option_pointer needs option_links (the option letters it points at)")
        mentions = self.raw.get("region_mentions")
        if mentions is not None and not (
                isinstance(mentions, dict) and set(mentions) == {"open", "digits"}
                and all(isinstance(i, int) and 0 <= i < text["vocab_size"] for i in mentions["open"])
                and all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) and v >= 0 for v in p)
                        and p[0] < text["vocab_size"] for p in mentions["digits"])):
            raise ConfigError(f"{source}: region_mentions must be {{'open': [token ids], 'digits': [[token id, value], "
                              "...]}} (recipes write `region_mentions: true` and get the tokenizer's ids)")

    # ---------------------------------------------------------------- text (Qwen2.5) part

    def _text_source(self) -> dict[str, Any]:
        # 4.53 writes the text fields both flat and in `text_config`; the flat ones are what 4.53 reads.
        tc = self.raw.get("text_config") or {}
        merged = dict(tc)
        merged.update({k: v for k, v in self.raw.items() if k not in ("text_config", "vision_config")})
        return merged

    def _get(self, key: str, default: Any = None) -> Any:
        return self._text_source().get(key, default)

    @property
    def hidden_size(self) -> int:
        return int(self._get("hidden_size"))

    @property
    def num_attention_heads(self) -> int:
        return int(self._get("num_attention_heads"))

    @property
    def vocab_size(self) -> int:
        return int(self._get("vocab_size"))

    @property
    def rope_parameters(self) -> dict[str, Any]:
        rp = self._get("rope_parameters") or self._get("rope_scaling") or {}
        return dict(rp)

    @property
    def rope_theta(self) -> float:
        return float(self.rope_parameters.get("rope_theta", self._get("rope_theta", 1_000_000.0)))

    @property
    def mrope_section(self) -> list[int]:
        section = self.rope_parameters.get("mrope_section")
        if not section:
            raise ConfigError("config: rope_scaling.mrope_section is missing (Qwen2.5-VL needs it)")
        return [int(s) for s in section]

    @property
    def tie_word_embeddings(self) -> bool:
        # transformers 4.53.3 omits the top-level key when it equals its default (True); `text_config` carries it.
        if "tie_word_embeddings" in self.raw:
            return bool(self.raw["tie_word_embeddings"])
        tc = self.raw.get("text_config") or {}
        return bool(tc.get("tie_word_embeddings", True))

    @property
    def vision(self) -> dict[str, Any]:
        return dict(self.raw["vision_config"])

    @property
    def spatial_merge_size(self) -> int:
        return int(self.vision.get("spatial_merge_size", 2))

    @property
    def patch_size(self) -> int:
        return int(self.vision.get("patch_size", 14))

    @property
    def temporal_patch_size(self) -> int:
        return int(self.vision.get("temporal_patch_size", 2))

    @property
    def tokens_per_second(self) -> int:
        return int(self.vision.get("tokens_per_second", 2))

    def token_id(self, name: str) -> int:
        return int(self.raw[f"{name}_token_id"])

    @property
    def ref_token_id(self) -> int:
        return self.token_id("ref")

    @property
    def seg_token_id(self) -> int:
        return self.token_id("seg")

    @property
    def mem_token_id(self) -> int:
        return self.token_id("mem")

    @property
    def video_token_id(self) -> int:
        return self.token_id("video")

    @property
    def vision_start_token_id(self) -> int:
        return self.token_id("vision_start")

    def build_text_config(self):
        """transformers 5.x `Qwen2_5_VLTextConfig` equivalent of the flat 4.53 fields."""
        from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig

        g = self._get
        cfg = Qwen2_5_VLTextConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=int(g("intermediate_size")),
            num_hidden_layers=int(g("num_hidden_layers")),
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=int(g("num_key_value_heads", self.num_attention_heads)),
            hidden_act=g("hidden_act", "silu"),
            max_position_embeddings=int(g("max_position_embeddings", 32768)),
            rms_norm_eps=float(g("rms_norm_eps", 1e-6)),
            attention_dropout=float(g("attention_dropout", 0.0) or 0.0),
            use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta, "mrope_section": self.mrope_section},
            bos_token_id=g("bos_token_id"),
            eos_token_id=g("eos_token_id"),
            tie_word_embeddings=self.tie_word_embeddings,
        )
        cfg._attn_implementation = "sdpa"
        return cfg

    def build_vision_config(self):
        from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig

        v = self.vision
        cfg = Qwen2_5_VLVisionConfig(
            depth=int(v["depth"]),
            hidden_size=int(v["hidden_size"]),
            hidden_act=v.get("hidden_act", "silu"),
            intermediate_size=int(v["intermediate_size"]),
            num_heads=int(v["num_heads"]),
            in_channels=int(v.get("in_channels", v.get("in_chans", 3))),
            patch_size=self.patch_size,
            spatial_merge_size=self.spatial_merge_size,
            temporal_patch_size=self.temporal_patch_size,
            tokens_per_second=self.tokens_per_second,
            window_size=int(v.get("window_size", 112)),
            out_hidden_size=int(v.get("out_hidden_size", self.hidden_size)),
            fullatt_block_indexes=list(v.get("fullatt_block_indexes", [])),
        )
        cfg._attn_implementation = "sdpa"
        return cfg

    # ---------------------------------------------------------------- SAM2 part

    @property
    def has_sam2(self) -> bool:
        return bool(self.raw.get("sam2_config")) or self.sam2_arch is not None

    @property
    def sam2_arch(self) -> dict[str, Any] | None:
        arch = self.raw.get("sam2_arch")
        return dict(arch) if isinstance(arch, dict) else None

    @property
    def sam2_preset(self) -> str | None:
        return sam2_preset_name(self.raw.get("sam2_config"))

    @property
    def sam2_image_size(self) -> int:
        return int(self.raw.get("sam2_image_size", 1024))

    @property
    def vision_abs_pos(self) -> int:
        """pixelwise's tiny models only (0 = off, the official architecture): learned row + column embeddings, for
        merged-grid positions up to this many per side, added to the visual tokens before the LLM. Qwen2.5-VL's
        positions are all relative (2-D RoPE in the ViT, MRoPE in the LLM), so a from-scratch LLM has no absolute
        location to read a box from; a pre-trained one learned to infer it from the image content."""
        return int(self.raw.get("vision_abs_pos", 0))

    @property
    def region_prompts_to_sam2(self) -> bool:
        """pixelwise's tiny models only (False = the official behaviour): a point/box region is segmented by SAM2
        prompted with that point/box on its own frame, as an interactive SAM2 is, instead of with the `<|seg|>` state
        of the localization round (which a from-scratch LLM must first learn to copy from the `<|ref|>` input)."""
        return bool(self.raw.get("region_prompts_to_sam2", False))

    @property
    def seg_retrieval_dim(self) -> int:
        """pixelwise's tiny models only (0 = off, the official `seg_head`): a `<|seg|>` state prompts SAM2 with a click
        where it finds its object. A query from the state is matched against keys of SAM2's own image embedding of
        the prompted frame (+ its positional encoding), one per grid cell; the click is the soft-argmax of the match
        around its best cell, given to SAM2 as the click of its prompt training. Locating becomes a matching problem
        with a dense target (which cells the object covers) instead of regressing SAM2's positional code."""
        return int(self.raw.get("seg_retrieval_dim", 0))

    @property
    def seg_key_high_res(self) -> bool:
        """pixelwise's tiny models only (with `seg_retrieval_dim`; False = off): the retrieval keys also read SAM2's
        stride-4 and stride-8 features pooled to the key grid (finer detail than the stride-16 embedding: texture,
        thin shapes). Their projection starts at zero, so switching it on leaves a trained model's keys unchanged."""
        return bool(self.raw.get("seg_key_high_res", False))

    @property
    def seg_key_visual(self) -> bool:
        """pixelwise's tiny models only (with `seg_retrieval_dim`; False = off): the retrieval keys also read the visual
        tokens of the prompted frame as the LLM receives them (the tower's merged tokens, resized to the key grid).
        The tower is trained with the LLM and its full-attention blocks see the whole frame, so a key can learn what
        SAM2's frozen, local embedding does not carry: the object's colour, and its place among the others (the
        relations and ordinals of a referring expression). Zero-initialised: switching it on leaves a trained model's
        keys unchanged."""
        return bool(self.raw.get("seg_key_visual", False))

    @property
    def seg_key_objects(self) -> int:
        """pixelwise's tiny models only (with `seg_retrieval_dim` and `seg_key_visual`; 0 = off): the width of the
        object keys (`object_keys.ObjectKeys`): each retrieval key also describes the object SAM2 segments when
        clicked at its cell (silhouette, what the visual tokens hold inside the mask, geometry), in the context of
        the other cells. Zero-initialised: switching it on leaves a trained model's keys unchanged."""
        return int(self.raw.get("seg_key_objects", 0))

    @property
    def seg_rerank(self) -> int:
        """pixelwise's tiny models only (with `seg_retrieval_dim`; 0 = off): the number of transformer layers that
        refine the retrieval scores. The query and every cell (its key, the key times the query, its score) are one
        sequence, so a cell's score can depend on the others' given the query: "the second circle from the left"
        needs the circles' positions, "the square right of the ring" the ring's. A query-key product alone scores each
        cell by itself: the session-12 model found 0.65 of attribute targets, 0.37 of ordinal and 0.27 of relation
        ones (docs/models/unipixel-tiny.md). Its output layer is zero-initialised: switching it on leaves a trained
        model's clicks unchanged."""
        return int(self.raw.get("seg_rerank", 0))

    @property
    def seg_ground(self) -> int:
        """pixelwise's tiny models only (with `seg_key_objects`; 0 = off): the number of transformer layers of the
        grounding head (`object_keys.GroundingHead`, `seg_ground_width` wide, default 96) that refines the retrieval
        scores from the LLM's whole `<|seg|>` state and every cell's key and object descriptor. It is trained on its
        own on cached inputs (`pixelwise.recipes.ground_head`): session 15 measured that the shipped model's
        retrieval clicks inside its target for 0.48 of validation expressions and that the head, trained on 31,776
        cached examples, raised that to 0.57 (docs/models/unipixel-tiny.md). Zero-initialised output: switching it on
        leaves a trained model's clicks unchanged."""
        return int(self.raw.get("seg_ground", 0))

    @property
    def seg_ground_eyes(self) -> bool:
        """pixelwise's tiny models only (with `seg_ground`; False = off): the grounding head also looks at each cell's
        proposal at the frame's resolution (`object_keys.CellEyes` on `cell_views`: a window of the frame's pixels and
        the mask around the proposal, its pixel statistics and geometry). The object descriptors see a proposal
        through its 32 x 32 mask, where a PixelWorld object is a few cells wide: too coarse to tell a star from a
        pentagon (session 16, docs/models/unipixel-tiny.md). Zero-initialised: switching it on leaves a trained
        head's clicks unchanged. The eyes read the proposals kept on the frame's features (`cell_proposals`); the
        option is an ablation, not in the shipped model."""
        return bool(self.raw.get("seg_ground_eyes", False))

    @property
    def seg_ground_words(self) -> int:
        """pixelwise's tiny models only (with `seg_ground`; 0 = off): the grounding head also reads the words of the
        question a `<|seg|>` answers, up to this many tokens (`UniPixelModel.seg_words`: the text of the user turn
        before it), through an embedding and a small text encoder of its own; its cells attend to them. The `<|seg|>`
        state alone is the first limit of the choice of object: session 16 measured that a head given the
        expression's parse instead clicks inside 0.64 of validation targets against 0.53; session 17's head that
        reads the words, trained on 55,745 cached records, clicks inside 0.66 (the state's head: 0.57) and is the
        shipped model's (docs/models/unipixel-tiny.md). Not neutral on a trained head: the cells' attention now
        includes the words, so the head is trained with them from the start."""
        return int(self.raw.get("seg_ground_words", 0))

    @property
    def seg_ground_geometry(self) -> bool:
        """pixelwise's tiny models only (with `seg_ground`; False = off): each cell of the grounding head also reads
        the geometry of its proposal as numbers (`object_keys.proposal_geometry`: centroid, spread, log area, object
        score; the centroid also as sines and cosines). A cell's learned position says where the cell is, not where
        its object is, and the descriptors carry the geometry only through their own training; ordinals ("the second
        large shape from the left") need where each object is. Session 18: on the same 35,960 cached records, clicks
        inside 0.631 -> 0.654 of validation targets (docs/models/unipixel-tiny.md). The proposals are the ones the
        descriptors were made from (`UniPixelModel.cell_proposals`, kept on the frame's features), so it costs no
        SAM2 decoding."""
        return bool(self.raw.get("seg_ground_geometry", False))

    @property
    def seg_grid(self) -> int:
        """pixelwise's tiny models only (with `seg_key_objects`; 0 = off, the grid of SAM2's image embedding,
        `sam2_image_size // 16` a side): the side of the grid of cells the retrieval chooses among. Each cell proposes
        the object SAM2 segments when clicked at its centre, so a target that holds no cell centre cannot be chosen:
        on 128-px frames the 8 x 8 embedding grid misses one PixelWorld validation target in five, a 16 x 16 grid one
        in 200 (session 16, docs/models/unipixel-tiny.md). The keys read SAM2's embedding and the visual tokens
        resized to this grid; the proposals for the LLM's view (`llm_object_view`) stay on the embedding's grid."""
        return int(self.raw.get("seg_grid", 0))

    @property
    def seg_ground_width(self) -> int:
        """The width of the `seg_ground` head (default 96)."""
        return int(self.raw.get("seg_ground_width", 96))

    @property
    def seg_key_pixels(self) -> bool:
        """pixelwise's tiny models only (with `seg_key_objects`; False = off): each proposal's descriptor also reads
        the frame's own pixel statistics inside its mask (`object_keys.pixel_statistics`: per channel the mean, the
        deviation and the mean difference to the next pixel along x and y). SAM2's fine features, averaged inside a
        mask, tell plain from striped from dotted 0.76 of the time (always "plain": 0.62); these twelve numbers 0.94
        (session 14, `retrieval_probe --inputs`). Zero-initialised: switching it on leaves a trained model's keys
        unchanged."""
        return bool(self.raw.get("seg_key_pixels", False))

    @property
    def seg_key_words(self) -> bool:
        """pixelwise's tiny models only (with `seg_retrieval_dim`; False = off): a linear head from each retrieval key
        to the LLM's word space, read only by the training loss (`LossConfig.key_words_weight`), which makes every
        key name the colour, shape, texture and size of the object under its cell. Session 13's probes found the
        query telling the texture a phrase asks for 0.98 of the time and the keys telling an object's texture 0.71
        (always "plain": 0.62): a key that cannot tell texture cannot match on it. Inference does not use it."""
        return bool(self.raw.get("seg_key_words", False))

    @property
    def seg_key_motion(self) -> bool:
        """pixelwise's tiny models only (with `seg_key_objects`; False = off): each cell's proposal is also tracked by
        SAM2 to 3 later frames spread over the clip, and where it went (centroid shift, area ratio, presence) joins its
        descriptor, so a key can answer "the circle that moves left". Without it the proposals are made on the
        prompted frame only and motion reaches the keys only through the visual tokens. Zero-initialised."""
        return bool(self.raw.get("seg_key_motion", False))

    @property
    def llm_object_view(self) -> bool:
        """pixelwise's tiny models only (with `seg_key_objects`; False = off): the LLM reads the object descriptors
        too. Each visual token of the first frame pair gets a projection of the descriptor of the object SAM2
        segments when clicked at that cell, and each `<|mem|>` embedding the mean descriptor under its region's mask
        on the first frame pair. Measured on the tiny models: the tower's tokens do not tell shape (probe 0.18) and
        the descriptors do (0.70), so without this the LLM cannot name, compare or answer about an object's shape.
        Zero-initialised: switching it on leaves a trained model's outputs unchanged."""
        return bool(self.raw.get("llm_object_view", False))

    @property
    def region_motion(self) -> bool:
        """pixelwise's tiny models only (False = off): each `<|mem|>` embedding also gets a learned projection
        (zero at init) of how its region moves over the frame pairs it is given on: displacement first -> last pair,
        area ratio, distance travelled (more than the displacement when it turned back), the share of pairs, and this
        pair's offset from the first (`object_keys.region_motion_features`). The official model leaves the LLM to
        compare the regions' memory tokens across pairs; the tiny LLM answered direction questions below chance
        (0.14 / 0.19 on the region-QA row, session 9)."""
        return bool(self.raw.get("region_motion", False))

    @property
    def region_own_frame(self) -> bool:
        """pixelwise's tiny models only (with `llm_object_view`; False = off): a `<|mem|>` region whose mask starts
        on a later frame pair gets the mean descriptor under its mask on *that* pair (SAM2 proposals made on the pair's
        first frame), not zeros. Without it only regions on the first frame pair carry a descriptor, and PixelWorld's
        video region questions are 91 % on later frames (docs/models/unipixel-tiny.md, session 9). Adds no weights:
        it feeds the same `object_keys` another frame."""
        return bool(self.raw.get("region_own_frame", False))

    @property
    def segment_forces_seg(self) -> bool:
        """pixelwise's tiny models only (False = off, as the official pipeline): in a segmentation request
        (`segment`, `segment_many`, a batch's segment queries) a stop token chosen before any `<|seg|>` of the answer
        is replaced by `<|seg|>`, and decoding goes on, so the user who asked for a mask gets the model's best one. The
        official model answers such requests with `<|seg|>`; the tiny one sometimes restates the question wrongly and
        stops without it (session 11: the README's example, "Sure, the red circle that moves to the top one.").
        Questions (`ask`) are never changed."""
        return bool(self.raw.get("segment_forces_seg", False))

    @property
    def region_mentions(self) -> dict[str, Any] | None:
        """pixelwise's tiny models only (None = off): where the text names a region ("What color is [1]?", "[0] is a
        red circle"), the region's own embedding (its `<|mem|>` slots averaged, or its `<|ref|>`) is added, through a
        learned gate (starting at 0.2, not zero: switching it on changes the number tokens' embeddings), to the
        embedding of the number token after `[`. The official prompt puts each region
        in a prefix line ("[1]: <|mem|>") and names it by its number elsewhere, so an answer must first find the line
        with the same number (two attention steps that a from-scratch 4-layer LLM had not learned: its answers to
        "What is [0]?" were the same for every region of a scene). Holds the tokenizer's ids: `open` (the tokens
        `[` and ` [`) and `digits` ([token id, value] for the number tokens); `mention_tokens(tokenizer)` makes it."""
        return self.raw.get("region_mentions") or None

    @property
    def option_links(self) -> dict[str, Any] | None:
        """pixelwise's tiny models only (None = off): in the user's text, each answer option's letter ("(B) red")
        also carries its option's words: the mean of their token embeddings (up to 4 tokens, to the next option or
        line break) is added to the letter's embedding through a learned gate (starting at 1). Picking the option
        that fits then takes one attention step (to the letter whose words match) instead of two (the word, then
        the letter before it); the session-8 model named a region right nine times in ten yet answered one letter
        for every option question after 1,400 steps of them (docs/models/unipixel-tiny.md). Holds the tokenizer's
        ids (`option_tokens(tokenizer)` makes them); assistant turns are left as they are, so an answer's own
        "(B) red" does not tell the letter its word."""
        return self.raw.get("option_links") or None

    @property
    def option_pointer(self) -> int:
        """pixelwise's tiny models only (with `option_links`; 0 = off): the width of a pointer that picks an answer's
        option letter. Where an assistant turn writes `(` after a user turn with options, the letter is the option
        whose letter state (which `option_links` fills with its words) best matches a query from the state before
        it, instead of the LM's choice among all tokens; trained by the cross-entropy over the options. The tiny LLM
        named the region right nine times in ten and still answered one letter for every option question, even
        with the answer stated in the question (docs/models/unipixel-tiny.md, session 8): retrieval by a learned
        match is what replaced writing a location for `<|seg|>`, and this does the same for a letter."""
        return int(self.raw.get("option_pointer", 0))

    @property
    def embed_norm(self) -> bool:
        """pixelwise's tiny models only (False = off, the official architecture): the visual tokens and the `<|ref|>` /
        `<|mem|>` region embeddings pass an RMSNorm each (`visual_norm`, `region_norm`, gain 1) before they enter the
        LLM. Trained from scratch without it, the tiny model's visual tokens grew to ~400x the norm of its text
        embeddings (and its memory embeddings ~600x), all along one shared direction: in a pre-norm LLM the layers'
        additions at those positions vanish beside them, and the memory of different objects reached the answer as
        the same vector (zeroing it left the region-naming loss unchanged; docs/models/unipixel-tiny.md)."""
        return bool(self.raw.get("embed_norm", False))

    @property
    def sam2_hidden_tokens(self) -> int:
        return int(self.raw.get("sam2_hidden_tokens", 2))

    @property
    def sam2_hidden_dim(self) -> int:
        """Width of SAM2 prompt tokens (256 for the official presets); sizes seg_head, ref_* and tem_* adapters."""
        arch = self.sam2_arch
        if arch is not None:
            for path in (("hidden_dim",), ("derived", "hidden_dim"), ("resolved_model_config", "image_encoder", "neck", "d_model")):
                node: Any = arch
                for p in path:
                    node = node.get(p) if isinstance(node, dict) else None
                if isinstance(node, int):
                    return node
            raise ConfigError("config: sam2_arch does not state the SAM2 hidden dim (hidden_dim / neck d_model)")
        preset = self.sam2_preset
        if preset is None:
            raise ConfigError(f"config: unknown sam2_config {self.raw.get('sam2_config')!r}")
        return SAM2_PRESET_HIDDEN_DIM[preset]

    @property
    def sam2_embedding_size(self) -> int:
        """Side of SAM2's image embedding (S / 16), the prompt encoder's `image_embedding_size`."""
        return self.sam2_image_size // 16

    @property
    def merger_hidden_size(self) -> int:
        """Width of the vision merger MLP input (4 x ViT width): what `<|mem|>` pools and `msk_proj` maps."""
        return int(self.vision["hidden_size"]) * self.spatial_merge_size**2
