"""Checkpoint loading: official layout, clear errors, pickle refused, save/load round trip of our own models."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pixelwise.core.errors import CheckpointError, ConfigError
from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration
from pixelwise.models.unipixel.weights_unipixel import (
    internal_to_official,
    official_to_internal,
    read_state_dict,
)

from .conftest import CHECKPOINT


def _copy_checkpoint(tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(CHECKPOINT, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def _edit_weights(ckpt: Path, edit) -> None:
    sd = load_file(str(ckpt / "model.safetensors"))
    edit(sd)
    save_file(sd, str(ckpt / "model.safetensors"), metadata={"format": "pt"})


def test_official_layout_loads_with_tied_head_and_buffers(model):
    sd = read_state_dict(CHECKPOINT)
    assert "lm_head.weight" not in sd and "model.embed_tokens.weight" in sd and "visual.merger.mlp.0.weight" in sd
    assert model.lm_head.weight is model.language_model.embed_tokens.weight
    for key in ("ref_encoder.pe_layer.positional_encoding_gaussian_matrix", "tem_pe.positional_encoding_gaussian_matrix"):
        assert torch.equal(dict(model.named_buffers())[key], sd[key])  # loaded, not re-drawn
    assert torch.equal(model.language_model.layers[0].self_attn.q_proj.weight, sd["model.layers.0.self_attn.q_proj.weight"])


def test_key_mapping_round_trip():
    for key in ("visual.blocks.0.attn.qkv.weight", "model.layers.3.mlp.up_proj.weight", "model.norm.weight",
                "lm_head.weight", "seg_head.1.weight", "sam2.no_mem_embed"):
        assert internal_to_official(official_to_internal(key)) == key
    assert official_to_internal("model.language_model.norm.weight") == "language_model.norm.weight"
    assert official_to_internal("model.visual.merger.ln_q.weight") == "visual.merger.ln_q.weight"


def test_missing_key_is_refused(tmp_path):
    ckpt = _copy_checkpoint(tmp_path)
    _edit_weights(ckpt, lambda sd: sd.pop("seg_head.3.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys: seg_head\.3\.weight"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)


def test_missing_random_buffer_is_refused(tmp_path):
    ckpt = _copy_checkpoint(tmp_path)
    _edit_weights(ckpt, lambda sd: sd.pop("tem_pe.positional_encoding_gaussian_matrix"))
    with pytest.raises(CheckpointError, match="tem_pe.positional_encoding_gaussian_matrix"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)


def test_wrong_shape_is_refused(tmp_path):
    ckpt = _copy_checkpoint(tmp_path)

    def edit(sd):
        sd["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(3, 3)

    _edit_weights(ckpt, edit)
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.self_attn\.q_proj\.weight has shape \(3, 3\)"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)


def test_unexpected_key_is_refused(tmp_path):
    ckpt = _copy_checkpoint(tmp_path)

    def edit(sd):
        sd["model.layers.99.extra.weight"] = torch.zeros(2)

    _edit_weights(ckpt, edit)
    with pytest.raises(CheckpointError, match=r"unexpected keys: model\.layers\.99\.extra\.weight"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(self.sentinel),))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_pickle_weights_refused_and_never_unpickled(tmp_path, name):
    ckpt = _copy_checkpoint(tmp_path)
    (ckpt / "model.safetensors").unlink()
    sentinel = tmp_path / "unpickled"
    boom = _Boom()
    boom.sentinel = str(sentinel)
    (ckpt / name).write_bytes(pickle.dumps(boom))
    with pytest.raises(CheckpointError, match="pickle"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)
    with pytest.raises(CheckpointError, match="pickle"):
        read_state_dict(ckpt / name)
    assert not sentinel.exists()


def test_corrupt_safetensors_and_missing_folder(tmp_path):
    ckpt = _copy_checkpoint(tmp_path)
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)
    with pytest.raises(CheckpointError):
        UniPixelForConditionalGeneration.from_pretrained(tmp_path / "nowhere")


def test_sharded_official_checkpoint_loads(tmp_path, model):
    ckpt = _copy_checkpoint(tmp_path)
    sd = load_file(str(ckpt / "model.safetensors"))
    (ckpt / "model.safetensors").unlink()
    keys = sorted(sd)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, ks in shards.items():
        save_file({k: sd[k] for k in ks}, str(ckpt / name), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = UniPixelForConditionalGeneration.from_pretrained(ckpt)
    assert torch.equal(loaded.seg_head[3].weight, model.seg_head[3].weight)
    (ckpt / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="shard"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)


@pytest.mark.parametrize("tied,shard", [(True, None), (False, 200_000)])
def test_save_load_round_trip(tmp_path, tiny_config, tied, shard):
    raw = tiny_config.to_dict()
    raw["tie_word_embeddings"] = tied
    cfg = UniPixelConfig.from_dict(raw)
    torch.manual_seed(0)
    model = UniPixelForConditionalGeneration(cfg).eval()
    model.stop_token_ids = [408, 406]
    out = model.save_pretrained(tmp_path / "own", max_shard_bytes=shard)
    on_disk = read_state_dict(out)
    assert ("lm_head.weight" in on_disk) == (not tied)
    assert any(k.startswith("model.layers.") for k in on_disk) and not any(k.startswith("language_model.") for k in on_disk)
    assert (out / "model.safetensors.index.json").is_file() == (shard is not None)
    loaded = UniPixelForConditionalGeneration.from_pretrained(out)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (loaded.lm_head.weight is loaded.language_model.embed_tokens.weight) == tied
    assert loaded.default_stop_token_ids() == [408, 406]


def test_save_stores_named_tensors_in_float16(tmp_path, tiny_config):
    """`save_pretrained(float16=prefixes)`: those tensors are written in float16 and load back as float32 (rounded),
    every other tensor exactly."""
    from safetensors import safe_open

    torch.manual_seed(0)
    model = UniPixelForConditionalGeneration(UniPixelConfig.from_dict(tiny_config.to_dict())).eval()
    out = model.save_pretrained(tmp_path / "half", float16=["seg_head."])
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert {d for k, d in dtypes.items() if k.startswith("seg_head.")} == {"F16"}
    assert {d for k, d in dtypes.items() if not k.startswith("seg_head.")} == {"F32"}
    loaded = UniPixelForConditionalGeneration.from_pretrained(out)
    a, b = model.state_dict(), loaded.state_dict()
    assert all(b[k].dtype == torch.float32 for k in b)
    assert all(torch.equal(b[k], a[k].half().float()) if k.startswith("seg_head.") else torch.equal(b[k], a[k])
               for k in a)


def test_config_errors(official_config):
    bad = dict(official_config, model_type="qwen2_5_vl")
    with pytest.raises(ConfigError, match="model_type"):
        UniPixelConfig.from_dict(bad)
    bad = dict(official_config, seg_token_id=None)
    with pytest.raises(ConfigError, match="seg_token_id"):
        UniPixelConfig.from_dict(bad)
    bad = dict(official_config, sam2_config="configs/whatever", sam2_arch=None)
    with pytest.raises(ConfigError, match="sam2"):
        UniPixelConfig.from_dict(bad)


def test_config_reads_official_keys(official_config):
    cfg = UniPixelConfig.from_dict(official_config)
    assert cfg.tie_word_embeddings is True  # absent at top level: 4.53.3 default, text_config says true
    assert cfg.sam2_hidden_dim == 64 and cfg.sam2_image_size == 128 and cfg.sam2_hidden_tokens == 2
    assert (cfg.ref_token_id, cfg.seg_token_id, cfg.mem_token_id) == (428, 429, 430)
    preset = dict(official_config, sam2_config="configs/sam2.1_hiera_b+", sam2_image_size=768)
    preset.pop("sam2_arch")
    cfg = UniPixelConfig.from_dict(preset)
    assert cfg.sam2_preset == "b+" and cfg.sam2_hidden_dim == 256 and cfg.sam2_embedding_size == 48
