"""`pixelwise train` runs PixelLM, UFO, Pixel-SAIL and VITRON through one loop (`pixelwise.train.family`): the
config's `recipe:` picks the family, a run folder that holds a run is refused, an interrupted run continues exactly
(the same losses as an uninterrupted one, each step logged once), and the result loads with `pixelwise.load`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from pixelwise.core.errors import ConfigError, PixelwiseError

TINY = {
    "pixellm": {"text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "num_key_value_heads": 1, "mrope_section": [2, 3, 3]},
                "vision": {"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "patch_size": 8,
                           "window_size": 64, "fullatt_block_indexes": [1]},
                "vision_taps": [-1, 0], "decoder_dim": 16, "decoder_heads": 2, "decoder_mlp_dim": 32,
                "decoder_depth": 1},
    "ufo": {"text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 1, "mrope_section": [2, 3, 3]},
            "vision": {"depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "patch_size": 8,
                       "window_size": 64, "fullatt_block_indexes": [1]},
            "grid_size": 3, "grid_max_steps": 24},
    "pixelsail": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64,
                  "seg_channels": 16, "upsampler_channels": 16, "patch_size": 8, "image_size": 64,
                  "num_prompt_tokens": 4},
    "vitron": {"vision_hidden": 32, "vision_layers": 1, "vision_heads": 2, "hidden_size": 32, "num_layers": 2,
               "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64, "signal_dim": 16, "seg_channels": 16,
               "upsampler_channels": 16, "image_size": 64, "patch_size": 8, "llm_pool": 2, "synergy_hidden": 16},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    root = tmp_path_factory.mktemp("family-data")
    img = root / "img"
    generate(img, GenConfig(split="train", num=16, seed=0, resolution=64,
                            tasks=("referring", "reasoning", "multi_target", "grounding", "detection", "region",
                                   "editing")))
    vid = root / "vid"
    generate(vid, GenConfig(split="train", num=4, seed=0, resolution=64, video=True, num_frames=4,
                            tasks=("referring", "editing")))
    return {"img": img, "vid": vid}


def _config(tmp_path: Path, family: str, data: dict[str, Path], name: str) -> Path:
    cfg = {"recipe": family, "data": str(data["img"]) if family != "vitron" else [str(data["img"]), str(data["vid"])],
           "out": str(tmp_path / name / "final"), "run_dir": str(tmp_path / name), "steps": 4, "batch_size": 2,
           "warmup": 1, "ckpt_every": 2, "log_every": 1, "threads": 1, "vocab_size": 300, "max_seconds": 600,
           "model": TINY[family]}
    if family in ("pixellm", "ufo"):
        cfg["frame_pixels"] = 64 * 64
    if family in ("pixelsail", "vitron"):
        cfg["points"] = 64
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.parametrize("family", ["pixellm", "ufo", "pixelsail", "vitron"])
def test_one_loop_trains_refuses_resumes_exactly_and_loads(family, data, tmp_path):
    import pixelwise
    from pixelwise.recipes.registry import recipe_of, run_recipe

    torch.set_num_threads(1)
    whole = _config(tmp_path, family, data, "whole")
    assert recipe_of(whole) == family
    out = run_recipe(whole, ["release_dtype=float16"] if family == "vitron" else [])
    straight = _losses(tmp_path / "whole")
    assert [s for s, _ in straight] == [1, 2, 3, 4]
    assert pixelwise.load(out).family == family
    if family == "vitron":  # the front end's health is logged each step (1.0 = one vector everywhere)
        first = json.loads((tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()[0])
        assert 0.0 < first["frontend_cos"] < 1.0
    if family == "vitron":  # a half-size release, loaded back in float32
        from safetensors import safe_open

        with safe_open(str(Path(out) / "model.safetensors"), "pt") as f:
            assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    with pytest.raises(ConfigError, match="already holds a run"):
        run_recipe(whole)

    parts = _config(tmp_path, family, data, "parts")
    run_recipe(parts, ["max_seconds=0"])  # the budget stops it after one step, with a checkpoint
    assert [s for s, _ in _losses(tmp_path / "parts")] == [1]
    run_recipe(parts, resume=True)
    assert _losses(tmp_path / "parts") == straight  # each step once, the same losses


@pytest.mark.parametrize("family", ["pixellm", "ufo", "pixelsail", "vitron"])
def test_init_continues_from_a_released_checkpoint(family, data, tmp_path):
    """`init`: the run starts from a checkpoint folder's weights, tokenizer and config (a half-size release trains in
    float32); at learning rate 0 the new release equals the one it started from."""
    from safetensors.torch import load_file

    from pixelwise.recipes.registry import run_recipe

    torch.set_num_threads(1)
    first = run_recipe(_config(tmp_path, family, data, "first"), ["release_dtype=float16"] if family == "vitron" else [])
    path = tmp_path / "again.yaml"
    cfg = yaml.safe_load(_config(tmp_path, family, data, "again").read_text())
    path.write_text(yaml.safe_dump({**cfg, "init": str(first)}))
    with pytest.raises(ConfigError, match="brings its own model.*drop model, vocab_size"):
        run_recipe(path)
    cfg = {k: v for k, v in cfg.items() if k not in ("model", "vocab_size", "frame_pixels")}
    path.write_text(yaml.safe_dump({**cfg, "init": str(tmp_path)}))
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        run_recipe(path)
    path.write_text(yaml.safe_dump({**cfg, "init": str(first), "out": str(first)}))
    with pytest.raises(ConfigError, match="is the init folder"):
        run_recipe(path)
    path.write_text(yaml.safe_dump({**cfg, "init": str(first), "lr": 0.0, "steps": 2, "run_dir": str(tmp_path / "a2"),
                                    "release_dtype": "float32"}))
    again = run_recipe(path)
    before, after = load_file(str(Path(first) / "model.safetensors")), load_file(str(Path(again) / "model.safetensors"))
    assert before.keys() == after.keys()
    for k in (k for k in before if "running_" not in k):  # batch statistics move in training even at lr 0
        assert torch.equal(before[k].float(), after[k]), k
    assert (Path(again) / "tokenizer.json").read_text() == (Path(first) / "tokenizer.json").read_text()


def test_a_run_from_init_resumes_exactly(data, tmp_path):
    """Ctrl-C / a wall-clock stop in a run that started from `init`, then `--resume`: the same losses as one
    uninterrupted run from the same checkpoint, each step logged once."""
    from pixelwise.recipes.registry import run_recipe

    torch.set_num_threads(1)
    first = run_recipe(_config(tmp_path, "pixellm", data, "first"))
    cfg = {k: v for k, v in yaml.safe_load(_config(tmp_path, "pixellm", data, "x").read_text()).items()
           if k not in ("model", "vocab_size", "frame_pixels")}
    runs = {}
    for name in ("whole", "parts"):
        path = tmp_path / f"{name}-init.yaml"
        path.write_text(yaml.safe_dump({**cfg, "init": str(first), "run_dir": str(tmp_path / f"{name}-init"),
                                        "out": str(tmp_path / f"{name}-init" / "final")}))
        runs[name] = path
    run_recipe(runs["whole"])
    run_recipe(runs["parts"], ["max_seconds=0"])
    assert [s for s, _ in _losses(tmp_path / "parts-init")] == [1]
    run_recipe(runs["parts"], resume=True)
    assert _losses(tmp_path / "parts-init") == _losses(tmp_path / "whole-init")


def test_strict_configs_and_the_recipe_list(tmp_path, data):
    from pixelwise.recipes.registry import listing, recipe_of, run_recipe

    path = _config(tmp_path, "pixellm", data, "bad")
    for bad, word in (("stepz=3", "stepz"), ("steps=abc", "steps"), ("model=3", "model"),
                      ("release_dtype=float8", "release_dtype")):
        with pytest.raises(ConfigError, match=word):
            run_recipe(path, [bad])
    cfg = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**cfg, "recipe": "nosuch"}))
    with pytest.raises(ConfigError, match="unknown recipe 'nosuch'"):
        recipe_of(path)
    path.write_text(yaml.safe_dump({**cfg, "data": str(tmp_path / "missing")}))
    with pytest.raises(PixelwiseError, match="pixelworld generate --out"):
        run_recipe(path)
    shipped = {name: configs for name, _, configs in listing()}
    assert set(shipped) == {"unipixel", "pixellm", "ufo", "pixelsail", "vitron"}
    for name, configs in shipped.items():
        assert configs and all(recipe_of(c) == name for c in configs), name


def test_the_cli_trains_a_family_lists_recipes_and_reports_config_errors_in_one_line(tmp_path, data):
    import os
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "pixelwise", "train", *map(str, args)], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})

    config = _config(tmp_path, "ufo", data, "cli")
    r = run(config, "--set", "steps=2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cli" / "final" / "config.json").is_file()
    r = run(config, "--set", "stepz=2")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "stepz" in r.stderr, r.stderr
    r = run(config)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    r = run("--list")
    assert r.returncode == 0 and all(name in r.stdout for name in ("unipixel", "pixellm", "ufo", "pixelsail", "vitron"))
