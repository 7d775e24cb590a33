"""Checkpoint safety: pickle refused (and never executed), safetensors headers validated before any allocation,
config values checked before a model is built, dataset pickles read without globals."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from pixelwise.core.checkpoint import (
    Field,
    check_config_fields,
    check_token_ids,
    load_safetensors,
    load_weights,
    read_safetensors_header,
    restricted_pickle_loads,
)
from pixelwise.core.errors import CheckpointError, ConfigError, FormatError
from tools.robustness.corpus import UNIPIXEL_CONFIG, _WriteFile, pickle_payload, torch_payload
from tests.reliability.conftest import SCALE

GOOD = {"a": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5, dtype=torch.bfloat16)}


def _st(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt", ".pkl", ""])
def test_pickle_payload_refused_without_allow_pickle(tmp_path, suffix):
    marker = tmp_path / "PWNED"
    f = tmp_path / f"weights{suffix}"
    f.write_bytes(pickle_payload(marker))
    with pytest.raises(CheckpointError, match="pickle-based weights are refused|not a .safetensors"):
        load_weights(f)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["plain pickle", "torch.save zip"])
def test_pickle_payload_refused_even_with_allow_pickle(tmp_path, kind):
    marker = tmp_path / "PWNED"
    f = tmp_path / "weights.pt"
    if kind == "plain pickle":
        f.write_bytes(pickle_payload(marker))
    else:
        torch_payload(f, marker)
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        load_weights(f, allow_pickle=True)
    assert not marker.exists()
    # the payload is real: an unrestricted load would have written the file
    pickle.loads(pickle_payload(marker))
    assert marker.exists()


def test_allow_pickle_loads_a_plain_state_dict(tmp_path):
    f = tmp_path / "model.pt"
    torch.save({"w": torch.ones(3)}, str(f))
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        load_weights(f)
    assert torch.equal(load_weights(f, allow_pickle=True)["w"], torch.ones(3))
    with pytest.raises(CheckpointError, match=r"shapes do not match.*w is \(3,\), expected \(4,\)"):
        load_weights(f, allow_pickle=True, expected_shapes={"w": (4,)})


def test_valid_safetensors_round_trip(tmp_path):
    f = tmp_path / "m.safetensors"
    f.write_bytes(save(GOOD))
    infos = read_safetensors_header(f)
    assert {k: v.shape for k, v in infos.items()} == {"a": (3, 4), "b": (5,)}
    out = load_safetensors(f, expected_shapes={"a": (3, 4)})
    assert all(torch.equal(out[k], GOOD[k]) for k in GOOD)


def test_weights_must_be_finite_floats(tmp_path, monkeypatch):
    f = tmp_path / "m.safetensors"
    for tensors, match in (({"w": torch.ones(3, dtype=torch.int64)}, r"floating point.*w \(I64\)"),
                           ({"w": torch.ones(3, dtype=torch.bool)}, r"w \(BOOL\)"),
                           ({"ok": torch.ones(2), "w": torch.tensor([1.0, float("nan")])}, "tensor w holds NaN or inf"),
                           ({"w": torch.tensor([float("inf")], dtype=torch.float16)}, "tensor w holds NaN or inf")):
        f.write_bytes(save(tensors))
        with pytest.raises(CheckpointError, match=match):
            load_safetensors(f)
    assert torch.isinf(load_safetensors(f, allow_nonfinite=True)["w"]).all()  # only when the caller asks


@pytest.mark.parametrize("data, match", [
    (save(GOOD)[:-7], "truncated"),
    (save(GOOD)[:20], "header length|not a safetensors"),
    (b"\x01\x02", "no header"),
    (struct.pack("<Q", 1 << 62) + b"{}", "header length"),
    (struct.pack("<Q", 6) + b"{oops}", "not valid JSON"),
    (_st({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 64]}}, bytes(64)), "occupies 64 bytes"),
    (_st({"a": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 1 << 42]}}, bytes(16)), "truncated"),
    (_st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
          "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)), "overlaps"),
    (_st({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)), "unknown dtype"),
    (_st({"a": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, bytes(16)), "non-negative"),
    (_st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(20)), "trailing bytes"),
    (_st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16)), "gap"),
    (_st({"__metadata__": {"k": 1}}, b""), "__metadata__"),
    (_st([1, 2], b""), "JSON object"),
])
def test_broken_safetensors_refused_before_loading(tmp_path, data, match):
    f = tmp_path / "m.safetensors"
    f.write_bytes(data)
    with pytest.raises(CheckpointError, match=match) as e:
        load_safetensors(f)
    assert str(f) in str(e.value)


def test_shape_mismatch_with_config_refused_before_loading(tmp_path):
    f = tmp_path / "m.safetensors"
    f.write_bytes(save(GOOD))
    with pytest.raises(CheckpointError, match=r"a is \(3, 4\), expected \(4, 4\)"):
        load_safetensors(f, expected_shapes={"a": (4, 4)})


def test_checkpoint_size_limit(tmp_path):
    f = tmp_path / "m.safetensors"
    f.write_bytes(save(GOOD))
    with pytest.raises(CheckpointError, match="exceeds the checkpoint limit of 10 bytes"):
        load_safetensors(f, max_bytes=10)


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_safetensors_mutations(tmp_path, data):
    """Any mutation of a valid file either loads the declared tensors exactly or is a CheckpointError."""
    blob = bytearray(save(GOOD))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    f = tmp_path / "m.safetensors"
    f.write_bytes(bytes(blob[:cut]) if data.draw(st.booleans()) else bytes(blob))
    try:
        out = load_safetensors(f)
    except CheckpointError:
        return
    infos = read_safetensors_header(f)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: v.shape for k, v in infos.items()}


def test_dataset_pickles_read_without_globals(tmp_path):
    refs = [{"ref_id": 0, "sentences": [{"sent": "a"}], "blob": b"\x00\x01"}]
    assert restricted_pickle_loads(pickle.dumps(refs, protocol=2)) == refs
    marker = tmp_path / "PWNED"
    with pytest.raises(pickle.UnpicklingError, match="builtins.exec"):
        restricted_pickle_loads(pickle.dumps([_WriteFile(str(marker))]))
    assert not marker.exists()


def test_refcoco_refs_payload_is_a_format_error(tmp_path):
    from pixelwise.data.formats.refcoco import load_refs

    marker = tmp_path / "PWNED"
    p = tmp_path / "refs(unc).p"
    p.write_bytes(pickle.dumps([_WriteFile(str(marker))], protocol=2))
    with pytest.raises(FormatError, match=r"refs\(unc\)\.p: not a refs pickle"):
        load_refs(p)
    assert not marker.exists()


def test_config_field_checks():
    fields = {"hidden": Field(int, 1, 4096), "eps": Field((int, float), 0, 1, required=False)}
    check_config_fields({"hidden": 64, "eps": 1e-6}, fields)
    for cfg, match in [({}, "missing field 'hidden'"), ({"hidden": "64"}, "must be int, got str"),
                       ({"hidden": True}, "must be int, got bool"), ({"hidden": 0}, ">= 1"),
                       ({"hidden": 10**9}, "<= 4096"), ({"hidden": 8, "eps": float("nan")}, "finite")]:
        with pytest.raises(ConfigError, match=match):
            check_config_fields(cfg, fields, "cfg.json")
    check_token_ids({"seg": 3, "eos": [1, 2]}, ["seg", "eos", "absent"], 4)
    with pytest.raises(ConfigError, match=r"'eos' = 9 is not a token id inside the vocabulary \(size 4\)"):
        check_token_ids({"eos": [1, 9]}, ["eos"], 4)


@pytest.mark.parametrize("key, value, match", [
    ("hidden_size", "64", "must be int"),
    ("hidden_size", -64, ">= 1"),
    ("num_attention_heads", 5, "not divisible"),
    ("vocab_size", True, "got bool"),
    ("seg_token_id", 448, "inside the vocabulary"),
    ("eos_token_id", [408, 99999], "inside the vocabulary"),
    ("vision_config", "none", "must be an object"),
])
def test_unipixel_config_validated_before_building(key, value, match):
    from pixelwise.models.unipixel import UniPixelConfig

    UniPixelConfig.from_dict(UNIPIXEL_CONFIG)  # the base config is valid
    cfg = dict(UNIPIXEL_CONFIG, **{key: value})
    with pytest.raises(ConfigError, match=match):
        UniPixelConfig.from_dict(cfg, source="ckpt/config.json")


def test_no_trust_remote_code_anywhere():
    from pathlib import Path

    import pixelwise

    root = Path(pixelwise.__file__).parent
    hits = [str(p) for p in root.rglob("*.py") if "trust_remote_code=True" in p.read_text(encoding="utf-8")]
    assert hits == []


def test_check_checkpoint_cli_refuses_payload(tmp_path):
    from pixelwise.cli import main

    marker = tmp_path / "PWNED"
    torch_payload(tmp_path / "w.pt", marker)
    assert main(["robustness", "check-checkpoint", str(tmp_path / "w.pt")]) == 2
    assert main(["robustness", "check-checkpoint", str(tmp_path / "w.pt"), "--allow-pickle"]) == 2
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "grow_tensor"])
def test_unipixel_checkpoint_damage_refused(tmp_path, damage):
    """The UniPixel loader goes through the validated safetensors reader: a truncated file or a header declaring a
    bigger tensor than the config is a CheckpointError, raised before any tensor is read."""
    import shutil
    from pathlib import Path

    from pixelwise.models.unipixel.weights_unipixel import read_state_dict

    src = Path(__file__).resolve().parents[1] / "data" / "conformance" / "unipixel" / "checkpoint"
    if not src.is_dir():
        pytest.skip("conformance checkpoint not present")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(src, ckpt)
    f = ckpt / "model.safetensors"
    f.chmod(0o644)
    blob = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(blob[: len(blob) - 1000])
        match = "truncated"
    else:  # rewrite one shape in the header to claim more elements than its bytes hold
        n = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + n])
        name = next(k for k, v in header.items() if k != "__metadata__" and v["shape"])
        header[name]["shape"][0] *= 2
        h = json.dumps(header).encode()
        f.write_bytes(struct.pack("<Q", len(h)) + h + blob[8 + n:])
        match = "declares"
    with pytest.raises(CheckpointError, match=match):
        read_state_dict(ckpt)


def _copy_with(src, dst, edit):
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    edit(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_absurd_config_sizes_are_refused_before_building(tmp_path):
    """A config that declares a model far larger than its weights, or one that cannot be built (zero heads), is a
    typed error in well under a second: nothing is allocated for it."""
    import time
    from pathlib import Path

    import pixelwise
    from pixelwise.core.errors import ConfigError

    repo = Path(__file__).resolve().parents[2]
    pixellm = repo / "pixelwise" / "checkpoints" / "pixellm-tiny"
    conformance = repo / "tests" / "data" / "conformance" / "unipixel" / "checkpoint"
    cases = [
        (_copy_with(pixellm, tmp_path / "wide", lambda c: c.update(decoder_mlp_dim=1 << 22)), CheckpointError,
         "describes a model of"),
        (_copy_with(pixellm, tmp_path / "heads", lambda c: c["text"].update(num_attention_heads=0)), ConfigError,
         "config"),
        (_copy_with(conformance, tmp_path / "deep", lambda c: c.update(num_hidden_layers=4000)), CheckpointError,
         "describes a model of"),
    ]
    for folder, error, match in cases:
        start = time.perf_counter()
        with pytest.raises(error, match=match):
            pixelwise.load(folder, device="cpu")
        assert time.perf_counter() - start < 20, folder.name
