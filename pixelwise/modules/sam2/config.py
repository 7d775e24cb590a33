"""SAM 2.1 architecture configuration.

One flat dataclass holds every number the modules need. It can be built from

* a UniPixel `config.json` (`Sam2Config.from_unipixel_config`), which either carries the fully resolved hydra model
  config under `sam2_arch` (the conformance checkpoint does) or only names an official config
  (`sam2_config: "configs/sam2.1_hiera_b+"`), in which case one of the built-in presets t / s / b+ / l is used;
* a preset name (`Sam2Config.preset("b+")`).

A few sizes are hard-coded in the official `SAM2Base._build_sam_heads` rather than read from the YAML (mask-decoder
transformer depth 2, 8 heads, MLP 2048, IoU head hidden 256, prompt-encoder mask channels 16); they are fields here
with those defaults so a config can state them explicitly.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pixelwise.core.errors import ConfigError


@dataclass
class Sam2Config:
    """Every architecture number of a SAM 2.1 model (defaults = official Hiera-B+ at 1024 px)."""

    image_size: int = 1024
    hidden_dim: int = 256  # neck d_model = prompt/decoder width = memory-attention width
    mem_dim: int = 64  # memory-encoder output width (memory features, object-pointer token width)

    # Hiera trunk
    trunk_embed_dim: int = 112
    trunk_num_heads: int = 2
    trunk_stages: tuple[int, ...] = (2, 3, 16, 3)
    trunk_global_att_blocks: tuple[int, ...] = (12, 16, 20)
    trunk_window_spec: tuple[int, ...] = (8, 4, 14, 7)
    trunk_window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    trunk_q_pool: int = 3
    trunk_q_stride: tuple[int, int] = (2, 2)
    trunk_dim_mul: float = 2.0
    trunk_head_mul: float = 2.0
    trunk_mlp_ratio: float = 4.0
    trunk_drop_path_rate: float = 0.0

    # FPN neck
    backbone_channel_list: tuple[int, ...] = (896, 448, 224, 112)  # deepest first
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_model: str = "nearest"
    scalp: int = 1

    # prompt encoder / mask decoder (hard-coded in the official builder)
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    decoder_attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    # memory attention
    memory_attention_layers: int = 4
    memory_attention_ff_dim: int = 2048
    memory_attention_num_heads: int = 1
    memory_attention_dropout: float = 0.1
    memory_attention_rope_theta: float = 10000.0

    # memory encoder
    mask_downsampler_kernel_size: int = 3
    mask_downsampler_stride: int = 2
    mask_downsampler_padding: int = 1
    mask_downsampler_total_stride: int = 16
    fuser_num_layers: int = 2
    fuser_kernel_size: int = 7
    fuser_padding: int = 3

    # tracking
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    backbone_stride: int = 16

    # pixelwise's tiny models only (0 = off, as every official model): channels of the learned upsampler of the mask
    # logits (`refine.MaskRefiner`), which reads the frame's pixels; SAM2 at 128 px decodes masks at 32 x 32
    mask_refiner: int = 0

    extra: dict[str, Any] = field(default_factory=dict)  # unrecognised / informational keys, never read

    # ------------------------------------------------------------------------------------------------------------
    @property
    def image_embedding_size(self) -> int:
        """Side of the stride-16 feature map the decoder and memory work on (S / 16)."""
        return self.image_size // self.backbone_stride

    def __post_init__(self) -> None:
        for name in ("trunk_stages", "trunk_global_att_blocks", "trunk_window_spec",
                     "trunk_window_pos_embed_bkg_spatial_size", "trunk_q_stride", "backbone_channel_list",
                     "fpn_top_down_levels"):
            setattr(self, name, tuple(getattr(self, name)))
        if self.image_size % 32 != 0:
            raise ConfigError(f"sam2 image_size must be a multiple of 32, got {self.image_size}")
        if self.hidden_dim % self.mem_dim != 0:
            raise ConfigError(f"sam2 hidden_dim {self.hidden_dim} must be a multiple of mem_dim {self.mem_dim}")
        if len(self.trunk_window_spec) != len(self.trunk_stages):
            raise ConfigError("sam2 trunk_window_spec needs one entry per stage")
        if len(self.backbone_channel_list) != len(self.trunk_stages):
            raise ConfigError("sam2 backbone_channel_list needs one entry per trunk stage")

    # ------------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready flat dict (suitable as a UniPixel `sam2_arch`; read back by `from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Sam2Config:
        """Inverse of `to_dict`; unknown keys are kept in `extra` (never interpreted)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        try:
            return cls(**known, extra={k: v for k, v in data.items() if k not in names})
        except TypeError as exc:
            raise ConfigError(f"bad SAM2 config: {exc}") from None

    @classmethod
    def preset(cls, name: str, image_size: int | None = None) -> Sam2Config:
        """Official SAM 2.1 sizes: 't', 's', 'b+' (alias 'b_plus', 'base_plus') or 'l'."""
        key = {"b_plus": "b+", "base_plus": "b+", "tiny": "t", "small": "s", "large": "l"}.get(name, name)
        if key not in _PRESETS:
            raise ConfigError(f"unknown SAM2 preset {name!r}; expected one of {sorted(_PRESETS)}")
        cfg = cls(**_PRESETS[key])
        if image_size is not None:
            cfg = dataclasses.replace(cfg, image_size=int(image_size))
        return cfg

    @classmethod
    def from_hydra_model_config(cls, model: Mapping[str, Any]) -> Sam2Config:
        """Build from an official (resolved) hydra `model:` section, e.g. `config.json['sam2_arch']['resolved_model_config']`."""
        try:
            trunk = model["image_encoder"]["trunk"]
            neck = model["image_encoder"]["neck"]
            mem_att = model["memory_attention"]
            layer = mem_att["layer"]
            mem_enc = model["memory_encoder"]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"sam2 model config is missing section {exc}") from None
        base = cls()  # official defaults for keys the YAML leaves out (Hiera class defaults)
        cross = layer.get("cross_attention", {})
        mds = mem_enc.get("mask_downsampler", {})
        fuser = mem_enc.get("fuser", {})
        fuser_layer = fuser.get("layer", {})
        kw: dict[str, Any] = {
            "image_size": int(model.get("image_size", base.image_size)),
            "hidden_dim": int(neck["d_model"]),
            "mem_dim": int(mem_enc.get("out_dim", base.mem_dim)),
            "trunk_embed_dim": int(trunk.get("embed_dim", 96)),
            "trunk_num_heads": int(trunk.get("num_heads", 1)),
            "trunk_stages": tuple(trunk.get("stages", base.trunk_stages)),
            "trunk_global_att_blocks": tuple(trunk.get("global_att_blocks", base.trunk_global_att_blocks)),
            "trunk_window_spec": tuple(trunk.get("window_spec", base.trunk_window_spec)),
            "trunk_window_pos_embed_bkg_spatial_size": tuple(
                trunk.get("window_pos_embed_bkg_spatial_size", base.trunk_window_pos_embed_bkg_spatial_size)),
            "trunk_q_pool": int(trunk.get("q_pool", base.trunk_q_pool)),
            "trunk_q_stride": tuple(trunk.get("q_stride", base.trunk_q_stride)),
            "trunk_dim_mul": float(trunk.get("dim_mul", base.trunk_dim_mul)),
            "trunk_head_mul": float(trunk.get("head_mul", base.trunk_head_mul)),
            "trunk_mlp_ratio": float(trunk.get("mlp_ratio", base.trunk_mlp_ratio)),
            "trunk_drop_path_rate": float(trunk.get("drop_path_rate", 0.0)),
            "backbone_channel_list": tuple(neck["backbone_channel_list"]),
            "fpn_top_down_levels": tuple(neck.get("fpn_top_down_levels") or range(len(neck["backbone_channel_list"]))),
            "fpn_interp_model": str(neck.get("fpn_interp_model", "bilinear")),
            "scalp": int(model["image_encoder"].get("scalp", 0)),
            "memory_attention_layers": int(mem_att.get("num_layers", base.memory_attention_layers)),
            "memory_attention_ff_dim": int(layer.get("dim_feedforward", base.memory_attention_ff_dim)),
            "memory_attention_num_heads": int(cross.get("num_heads", 1)),
            "memory_attention_dropout": float(layer.get("dropout", base.memory_attention_dropout)),
            "memory_attention_rope_theta": float(cross.get("rope_theta", base.memory_attention_rope_theta)),
            "mask_downsampler_kernel_size": int(mds.get("kernel_size", 4)),
            "mask_downsampler_stride": int(mds.get("stride", 4)),
            "mask_downsampler_padding": int(mds.get("padding", 0)),
            "mask_downsampler_total_stride": int(mds.get("total_stride", 16)),
            "fuser_num_layers": int(fuser.get("num_layers", base.fuser_num_layers)),
            "fuser_kernel_size": int(fuser_layer.get("kernel_size", base.fuser_kernel_size)),
            "fuser_padding": int(fuser_layer.get("padding", base.fuser_padding)),
            "num_maskmem": int(model.get("num_maskmem", base.num_maskmem)),
            "max_obj_ptrs_in_encoder": int(model.get("max_obj_ptrs_in_encoder", base.max_obj_ptrs_in_encoder)),
            "sigmoid_scale_for_mem_enc": float(model.get("sigmoid_scale_for_mem_enc", 1.0)),
            "sigmoid_bias_for_mem_enc": float(model.get("sigmoid_bias_for_mem_enc", 0.0)),
            "backbone_stride": int(model.get("backbone_stride", 16)),
        }
        _check_supported_flags(model)
        # The memory encoder's input width must equal the neck width, and its mask embedding must match it too.
        in_dim = int(mem_enc.get("in_dim", kw["hidden_dim"]))
        embed = int(mds.get("embed_dim", in_dim))
        if in_dim != kw["hidden_dim"] or embed != kw["hidden_dim"] or int(fuser_layer.get("dim", in_dim)) != in_dim:
            raise ConfigError("sam2 memory encoder in_dim / mask embed_dim / fuser dim must equal the neck d_model")
        return cls(**kw)

    @classmethod
    def from_unipixel_config(cls, config: Mapping[str, Any]) -> Sam2Config:
        """Build from a UniPixel `config.json` dict.

        Uses `sam2_arch.resolved_model_config` when present, else maps `sam2_config` (e.g. `configs/sam2.1_hiera_b+`)
        to a preset. `sam2_image_size` always overrides the image size (the official builder does the same).
        """
        arch = config.get("sam2_arch")
        if isinstance(arch, Mapping) and isinstance(arch.get("resolved_model_config"), Mapping):
            cfg = cls.from_hydra_model_config(arch["resolved_model_config"])
        elif isinstance(arch, Mapping) and "hidden_dim" in arch and "trunk_embed_dim" in arch:
            cfg = cls.from_dict(arch)  # flat form written by `to_dict` (our own tiny models)
        else:
            name = str(config.get("sam2_config") or "")
            match = re.search(r"hiera_(t|s|b\+|l)(?:\.yaml)?$", name) or re.fullmatch(r"(t|s|b\+|l)", name)
            if not match:
                raise ConfigError(f"cannot determine the SAM2 architecture from sam2_config={name!r} (no sam2_arch)")
            cfg = cls.preset(match.group(1))
        if config.get("sam2_image_size"):
            cfg = dataclasses.replace(cfg, image_size=int(config["sam2_image_size"]))
        return cfg


# Flags of the official model config this implementation hard-wires (the SAM 2.1 inference behaviour). A config
# asking for something else is refused rather than silently run differently.
_REQUIRED_FLAGS: dict[str, Any] = {
    "use_high_res_features_in_sam": True,
    "multimask_output_in_sam": True,
    "multimask_output_for_tracking": True,
    "use_multimask_token_for_obj_ptr": True,
    "multimask_min_pt_num": 0,
    "multimask_max_pt_num": 1,
    "iou_prediction_use_sigmoid": True,
    "pred_obj_scores": True,
    "pred_obj_scores_mlp": True,
    "fixed_no_obj_ptr": True,
    "use_obj_ptrs_in_encoder": True,
    "use_mlp_for_obj_ptr_proj": True,
    "add_tpos_enc_to_obj_ptrs": True,
    "proj_tpos_enc_in_obj_ptrs": True,
    "use_signed_tpos_enc_to_obj_ptrs": True,
    "only_obj_ptrs_in_the_past_for_eval": True,
    "directly_add_no_mem_embed": True,
    "no_obj_embed_spatial": True,
}


def _check_supported_flags(model: Mapping[str, Any]) -> None:
    bad = {k: model[k] for k, v in _REQUIRED_FLAGS.items() if k in model and model[k] != v}
    if bad:
        raise ConfigError(f"unsupported SAM2 options (this implementation follows SAM 2.1 defaults): {bad}")


_COMMON: dict[str, Any] = {"image_size": 1024, "hidden_dim": 256, "mem_dim": 64}
_PRESETS: dict[str, dict[str, Any]] = {
    "t": dict(_COMMON, trunk_embed_dim=96, trunk_num_heads=1, trunk_stages=(1, 2, 7, 2),
              trunk_global_att_blocks=(5, 7, 9), trunk_window_pos_embed_bkg_spatial_size=(7, 7),
              backbone_channel_list=(768, 384, 192, 96)),
    "s": dict(_COMMON, trunk_embed_dim=96, trunk_num_heads=1, trunk_stages=(1, 2, 11, 2),
              trunk_global_att_blocks=(7, 10, 13), trunk_window_pos_embed_bkg_spatial_size=(7, 7),
              backbone_channel_list=(768, 384, 192, 96)),
    "b+": dict(_COMMON, trunk_embed_dim=112, trunk_num_heads=2, trunk_stages=(2, 3, 16, 3),
               trunk_global_att_blocks=(12, 16, 20), trunk_window_pos_embed_bkg_spatial_size=(14, 14),
               backbone_channel_list=(896, 448, 224, 112)),
    "l": dict(_COMMON, trunk_embed_dim=144, trunk_num_heads=2, trunk_stages=(2, 6, 36, 4),
              trunk_global_att_blocks=(23, 33, 43), trunk_window_pos_embed_bkg_spatial_size=(7, 7),
              trunk_window_spec=(8, 4, 16, 8), backbone_channel_list=(1152, 576, 288, 144)),
}
