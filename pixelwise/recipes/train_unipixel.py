"""UniPixel training recipe, readable top to bottom; one YAML file per stage (`pixelwise/recipes/configs/`).

    pixelwise train pixelwise/recipes/configs/unipixel_tiny.yaml            # = python -m pixelwise.recipes.train_unipixel CONFIG
    pixelwise train CONFIG --resume                                          # continue a run exactly (same losses)
    torchrun --standalone --nproc_per_node 2 -m pixelwise.recipes.train_unipixel CONFIG --set distributed.strategy=fsdp2

Steps: (1) processes and devices; (2) the model: a tiny one from scratch (tokenizer trained offline on the data) or
a checkpoint folder, plus earlier stages' partial checkpoints; (3) what trains: regex patterns, optional LoRA (peft)
on LLM and ViT, parameter groups with their own learning rates; (4) data: sources mixed with rates, conversations,
tokens, labels, SAM2 targets; (5) wrapping on torch's engines (DDP, FSDP2) or DeepSpeed; (6) the loop: gradient
accumulation, bf16 autocast, clipping, cosine schedule with warm-up, logging, atomic resumable checkpoints;
(7) the result: trainable-only partial checkpoint or the merged full model, loadable by `pixelwise.load`.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from pixelwise.core.errors import ConfigError
from pixelwise.core.io import atomic_write_text
from pixelwise.core.viz import overlay_masks
from pixelwise.data.pixelworld import native
from pixelwise.data.templates import TEMPLATE_CORPUS, corpus_texts
from pixelwise.models.unipixel import UniPixelConfig, UniPixelForConditionalGeneration, UniPixelProcessor
from pixelwise.models.unipixel.processing_unipixel import mention_tokens, option_tokens
from pixelwise.train import distributed as D
from pixelwise.train import tiny
from pixelwise.train.config import load_recipe_config, recipe_cli
from pixelwise.train.logging import RunLogger
from pixelwise.train.stop import StopRequest
from pixelwise.train.optim import OptimConfig, build_optimizer, cosine_with_warmup, param_groups
from pixelwise.train.sam2_prompts import PromptedObjectDataset, Sam2PromptModule, collate_prompted
from pixelwise.train.sampler import ResumableSampler
from pixelwise.train.state import (
    _flatten_optimizer,
    _unflatten_optimizer,
    claim_run_dir,
    load_checkpoint,
    model_state,
    resume_checkpoint,
    save_checkpoint,
)
from pixelwise.train.text_lm import TextLMDataset, TextLMModule, collate_text
from pixelwise.train.unipixel_data import (
    BenchmarkSource,
    DenseGroundingSource,
    MixedSource,
    PixelWorldSource,
    RegionChoiceSource,
    RegionMotionSource,
    SceneQuestionSource,
    UniPixelTrainDataset,
    collate_examples,
)
from pixelwise.train.unipixel_loss import LossConfig, UniPixelTrainModule

DEFAULTS: dict[str, Any] = {
    "recipe": "unipixel",  # `pixelwise train` runs a config with the recipe this names (`pixelwise train --list`)
    "run_dir": "runs/unipixel",
    "seed": 0,
    # unipixel (conversations: LM + SAM2 losses) | sam2_prompts (SAM2 alone on clicked/boxed objects) |
    # text_lm (the LLM alone on the conversations' text, every token supervised)
    "objective": "unipixel",
    "threads": None,  # torch intra-op threads (None: torch's default)
    "model": {
        "init": "scratch",  # scratch | PATH (a checkpoint folder)
        "sizes": {},  # TinySizes overrides (scratch)
        "vocab_size": 1024,  # BPE vocabulary of the offline tokenizer (scratch)
        "partial_checkpoints": [],  # earlier stages' trainable-only files loaded over the init
        # config.json keys changed when starting from a folder (e.g. {vision_abs_pos: 8}); parameters that the
        # change adds start from their own init (zero for vision_abs_pos), all others from the folder
        "config_overrides": {},
        "processor_overrides": {},  # preprocessor_config.json keys changed (e.g. frame_min/max_pixels)
        "gradient_checkpointing": False,
    },
    "train": {
        "trainable": [".*"],  # regexes over parameter names (re.search); the rest is frozen
        "frozen": [],  # regexes frozen even when matched by `trainable`
        "lora": None,  # {r, alpha, dropout, targets: regex} -> peft LoRA on the matching Linear layers
    },
    "data": {
        "sources": [],  # [{type: pixelworld|benchmark, root, rate, tasks, benchmark}]
        "video_frames": [8, 16],
        "sample_objects": 5,
        "sam2_max_frames": None,  # supervise SAM2 on at most this many of the LLM's frames (speed)
        "group_by_type": False,  # type-homogeneous global micro-batches (official group_by_data_type)
        "clip_frames": 3,  # sam2_prompts: frames per prompted clip (the object is tracked through them)
        "num_workers": 1,
    },
    "loss": {},  # LossConfig
    "optim": {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 0, "min_lr_ratio": 0.0, "groups": []},
    "steps": 100,
    "micro_batch": 4,  # examples per forward/backward (one sequence each)
    "grad_accum": 1,  # micro-batches per optimizer step (per rank)
    "max_grad_norm": 1.0,
    "bf16": False,  # torch.autocast bf16
    "distributed": {"strategy": "ddp", "deepspeed": None},  # ddp | fsdp2 | deepspeed (+ a ZeRO config dict)
    "checkpoint": {"every_steps": 0, "every_minutes": 10, "keep": 2, "trainable_only": False},
    "log": {"every_steps": 10, "images_every_steps": 0, "tensorboard": True, "progress": True},
    "final": {"save": "full", "path": None,  # full (merged model folder) | partial (trainable tensors only) | none
              "float16": []},  # name prefixes of tensors a full save stores in float16 (they load as float32)
    "stop_after": None,  # checkpoint and stop after this many steps of this invocation (time-boxed sessions;
                         # the schedule stays the whole run's; continue with --resume)
}


# ------------------------------------------------------------------------------------------------ config


# sections whose keys are not fixed here (their own dataclasses or the model config check them)
FREE_SECTIONS = ("model.sizes", "model.config_overrides", "model.processor_overrides", "loss", "distributed.deepspeed")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> dict[str, Any]:
    """The recipe's config: DEFAULTS <- YAML <- overrides, strict (`pixelwise.train.config`)."""
    return load_recipe_config(path, DEFAULTS, overrides, FREE_SECTIONS)


# ------------------------------------------------------------------------------------------------ model

# the non-weight files of a model folder that travel with it (tokenizer, templates, frame budget, stop tokens)
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "preprocessor_config.json", "generation_config.json")


def copy_processor_files(src: str | Path, dst: str | Path) -> None:
    """The `PROCESSOR_FILES` that `src` has, copied into the model folder `dst`."""
    import shutil

    for f in PROCESSOR_FILES:
        if (Path(src) / f).is_file():
            shutil.copyfile(Path(src) / f, Path(dst) / f)


def build_sources(cfg: dict) -> Any:
    sources = []
    for s in cfg["data"]["sources"]:
        kind = s.get("type", "pixelworld")
        if kind == "pixelworld":
            src = PixelWorldSource(s["root"], tasks=s.get("tasks"), answer_style=s.get("answer_style", "native"))
        elif kind == "benchmark":
            src = BenchmarkSource(s["benchmark"], s["root"])
        elif kind == "pixelworld_dense":  # every object of a scene with its box or mask (DenseGroundingSource)
            src = DenseGroundingSource(s["root"], seg_rate=float(s.get("seg_rate", 0.5)),
                                       mem_rate=float(s.get("mem_rate", 0.0)))
        elif kind == "pixelworld_questions":  # short questions only the image answers (SceneQuestionSource)
            src = SceneQuestionSource(s["root"], turns=int(s.get("turns", 4)))
        elif kind == "pixelworld_region_choice":  # option questions about regions (RegionChoiceSource)
            src = RegionChoiceSource(s["root"], turns=int(s.get("turns", 4)), open_rate=float(s.get("open_rate", 0.0)),
                                     hint_rate=float(s.get("hint_rate", 0.0)),
                                     open_answer=str(s.get("open_answer", "region")))
        elif kind == "pixelworld_region_motion":  # option questions about regions across a clip (RegionMotionSource)
            src = RegionMotionSource(s["root"], turns=int(s.get("turns", 4)), frames=int(s.get("frames", 4)))
        else:
            raise ConfigError(f"data source type {kind!r}: use pixelworld, pixelworld_dense, pixelworld_questions, "
                              "pixelworld_region_choice, pixelworld_region_motion or benchmark")
        sources.append((src, float(s.get("rate", 1.0))))
    if not sources:
        raise ConfigError("data.sources is empty")
    return MixedSource(sources, seed=cfg["seed"])


def tokenizer_corpus(cfg: dict) -> list[str]:
    """Texts for the offline tokenizer: every question/answer of the PixelWorld sources + the templates."""

    texts = list(TEMPLATE_CORPUS)
    for s in cfg["data"]["sources"]:
        if s.get("type", "pixelworld") == "pixelworld":
            for sample in native.iter_samples(s["root"]):
                texts += corpus_texts(sample)
    return texts


def build_model(cfg: dict, run_dir: Path, info: D.DistInfo):
    """-> (model, processor, model folder holding config + tokenizer files)."""

    mcfg = cfg["model"]
    if mcfg["init"] == "scratch":
        folder = run_dir / "model_init"
        if info.is_main and not (folder / "config.json").is_file():
            sizes = tiny.TinySizes.from_dict(mcfg["sizes"])
            tok = tiny.build_tokenizer(tokenizer_corpus(cfg), vocab_size=mcfg["vocab_size"])
            tiny.write_processor_files(folder, tok, sizes)

            atomic_write_text(folder / "config.json", json.dumps(tiny.tiny_config(tok, sizes), indent=2) + "\n")
        D.barrier(info)
        model = tiny.build_model(json.loads((folder / "config.json").read_text()), seed=cfg["seed"])
        model.stop_token_ids = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    else:
        folder = Path(mcfg["init"])
        model = UniPixelForConditionalGeneration.from_pretrained(folder)
        if mcfg.get("config_overrides"):
            overrides = dict(mcfg["config_overrides"])
            needs_ids = [(k, f) for k, f in (("region_mentions", mention_tokens), ("option_links", option_tokens))
                         if overrides.get(k) is True]
            if needs_ids:  # the token ids the options read, from this model's tokenizer
                tokenizer = UniPixelProcessor.from_pretrained(folder).tokenizer
                overrides.update({k: f(tokenizer) for k, f in needs_ids})
            raw = model.config.to_dict()
            for key, value in overrides.items():  # a nested section (`sam2_arch`) is updated, not replaced
                raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
            config = UniPixelConfig.from_dict(raw, source="model.config_overrides")
            torch.manual_seed(cfg["seed"])
            grown = UniPixelForConditionalGeneration(config)
            _, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
            if unexpected:
                raise ConfigError(f"model.config_overrides removes parameters: {unexpected[:5]}")
            grown.stop_token_ids = model.stop_token_ids
            model = grown
        if mcfg.get("config_overrides") or mcfg.get("processor_overrides"):
            # the run's own model folder: the init's files with the changed config / preprocessor config, so
            # exports of intermediate checkpoints and the final folder describe the model that trained

            copy_to = run_dir / "model_init"
            if info.is_main:
                copy_to.mkdir(parents=True, exist_ok=True)
                copy_processor_files(folder, copy_to)
                pre = json.loads((folder / "preprocessor_config.json").read_text())
                unknown = set(mcfg.get("processor_overrides") or {}) - set(pre)
                if unknown:
                    raise ConfigError(f"model.processor_overrides: unknown keys {sorted(unknown)}")
                pre.update(mcfg.get("processor_overrides") or {})
                atomic_write_text(copy_to / "preprocessor_config.json", json.dumps(pre, indent=2) + "\n")
                atomic_write_text(copy_to / "config.json", json.dumps(model.config.to_dict(), indent=2) + "\n")
            D.barrier(info)
            folder = copy_to
    processor = UniPixelProcessor.from_pretrained(folder)
    for part in mcfg.get("partial_checkpoints") or []:
        from safetensors.torch import load_file

        _, unexpected = model.load_state_dict(load_file(str(part)), strict=False)
        if unexpected:
            raise ConfigError(f"{part}: unexpected keys {unexpected[:5]}")
    if mcfg.get("gradient_checkpointing"):
        model.language_model.gradient_checkpointing_enable({"use_reentrant": False})
        model.visual.gradient_checkpointing_enable({"use_reentrant": False}) if hasattr(
            model.visual, "gradient_checkpointing_enable") else None
    return model, processor, folder


def select_trainable(model: torch.nn.Module, tcfg: dict) -> torch.nn.Module:
    """Freeze by regex, optionally add LoRA (peft) on the LLM/ViT linears; returns the (possibly peft) model."""
    lora = tcfg.get("lora")
    if lora:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as e:  # peft is in the [train] extra
            raise ConfigError("train.lora needs peft (pip install 'pixelwise[train]')") from e
        pattern = re.compile(lora.get("targets", r"(language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj|visual\.blocks\.\d+\.attn\.(qkv|proj))$"))
        names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and pattern.search(n)]
        lcfg = LoraConfig(r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
                          lora_dropout=float(lora.get("dropout", 0.0)), target_modules=names, bias="none")
        model = inject_adapter_in_model(lcfg, model)
    trainable = [re.compile(p) for p in tcfg.get("trainable", [".*"])]
    frozen = [re.compile(p) for p in tcfg.get("frozen", [])]
    for name, p in model.named_parameters():
        on = any(r.search(name) for r in trainable) and not any(r.search(name) for r in frozen)
        if lora and "lora_" in name:
            on = True
        p.requires_grad_(on)
    return model


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold LoRA weights into the base Linear layers (merged full checkpoints)."""
    for _, mod in list(model.named_modules()):
        if hasattr(mod, "merge") and hasattr(mod, "lora_A"):
            mod.merge()
    for name, mod in list(model.named_modules()):
        if hasattr(mod, "base_layer") and hasattr(mod, "lora_A"):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, mod.base_layer)
    return model


def shard_units(module: torch.nn.Module) -> list[torch.nn.Module]:
    core = module.model
    return list(core.language_model.layers) + list(core.visual.blocks)


# ------------------------------------------------------------------------------------------------ data order


class StepBatches:
    """Index lists per (step, micro-batch) from `ResumableSampler`'s epoch orders: the batch of a step is a pure
    function of the step, so a resumed run loads exactly what an uninterrupted one would.

    With `group_keys` (one key per dataset item, e.g. task and media kind) every *global* micro-batch (all ranks
    together) holds one kind of data, as the official `group_by_data_type` sampler: items are shuffled within each
    kind, cut into global micro-batches (remainders dropped) and the batches shuffled.
    """

    def __init__(self, sampler, micro_batch: int, grad_accum: int, start_step: int, steps: int,
                 group_keys: list | None = None):
        self.sampler, self.mb, self.acc = sampler, micro_batch, grad_accum
        self.start, self.steps = start_step, steps
        self.group_keys = group_keys
        self._cache: dict[int, list[int]] = {}
        self.order_len = len(self._order(0))

    def _order(self, epoch: int) -> list[int]:
        """This rank's items of an epoch, in consumption order."""
        if epoch in self._cache:
            return self._cache[epoch]
        import numpy as np

        s = self.sampler
        if self.group_keys is None:
            order = [int(i) for i in s._epoch_order(epoch)]
        else:
            rng = np.random.default_rng([s.seed, epoch, 7])
            perm = rng.permutation(s.size)
            by_key: dict = {}
            for i in perm:
                by_key.setdefault(self.group_keys[int(i)], []).append(int(i))
            g = self.mb * s.world
            batches = [items[j: j + g] for key in sorted(by_key, key=str) for items in [by_key[key]]
                       for j in range(0, len(items) - g + 1, g)]
            batches = [batches[int(k)] for k in rng.permutation(len(batches))]
            order = [b[r] for b in batches for r in range(s.rank * self.mb, (s.rank + 1) * self.mb)]
        self._cache = {epoch: order}
        return order

    def indices(self, position: int) -> int:
        epoch, pos = divmod(position, self.order_len)
        return int(self._order(epoch)[pos])

    def __iter__(self):
        for step in range(self.start, self.steps):
            for m in range(self.acc):
                base = (step * self.acc + m) * self.mb
                yield [self.indices(base + j) for j in range(self.mb)]

    def __len__(self) -> int:
        return (self.steps - self.start) * self.acc

    def state(self, step: int) -> dict:
        epoch, pos = divmod(step * self.acc * self.mb, self.order_len)
        return {"epoch": epoch, "position": pos, "seed": self.sampler.seed, "step": step}


# ------------------------------------------------------------------------------------------------ main


def train(cfg: dict, resume: bool = False, overwrite: bool = False) -> Path:
    # (1) processes and devices
    info = D.init_distributed(cfg.get("device", "auto"))
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    run_dir = Path(cfg["run_dir"])
    if info.is_main:  # (a failed check ends this process; torchrun then stops the others)
        claim_run_dir(run_dir, resume, overwrite)
    D.barrier(info)
    torch.manual_seed(cfg["seed"])

    # (2) model and (3) what trains
    model, processor, model_folder = build_model(cfg, run_dir, info)
    if int(cfg["steps"]) == 0:  # assemble only: the init with its config overrides and partial checkpoints, saved
        if cfg["final"]["save"] != "full":
            raise ConfigError("steps: 0 assembles a model (init + config_overrides + partial_checkpoints): "
                              "it needs final.save: full")
        out = _final(cfg, run_dir, model, model, processor, model_folder, info, "none")
        D.finish(info)
        if info.is_main:
            print(f"assembled (no training): {out}", flush=True)
        return out or run_dir
    model = select_trainable(model, cfg["train"])
    model.train()
    loss_cfg = LossConfig.from_dict(cfg["loss"])
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())

    # (4) data (and the module that turns a micro-batch of it into a loss)
    objective = cfg.get("objective", "unipixel")
    if objective == "sam2_prompts":  # stage 0 of a from-scratch model: SAM2 on clicked / boxed objects

        roots = [s["root"] for s in cfg["data"]["sources"] if s.get("type", "pixelworld") == "pixelworld"]
        dataset = PromptedObjectDataset(roots, processor.sam2_image_size, int(cfg["data"]["clip_frames"]),
                                        objects=int(cfg["data"]["sample_objects"]), seed=cfg["seed"])
        source, collate = dataset, collate_prompted
        module = Sam2PromptModule(model, loss_cfg.sam2).to(info.device)
    elif objective == "text_lm":  # the LLM alone on the conversations' text, every token supervised

        source, collate = build_sources(cfg), collate_text
        dataset = TextLMDataset(source, processor, seed=cfg["seed"])
        module = TextLMModule(model, pad_id=processor.token_id("<|endoftext|>")).to(info.device)
    elif objective == "unipixel":
        source, collate = build_sources(cfg), collate_examples
        dataset = UniPixelTrainDataset(source, processor, seed=cfg["seed"],
                                       video_frames=tuple(cfg["data"]["video_frames"]),
                                       sample_objects=int(cfg["data"]["sample_objects"]),
                                       sam2_max_frames=cfg["data"].get("sam2_max_frames"),
                                       visual_words=(tuple(loss_cfg.visual_word_kinds)
                                                     if loss_cfg.visual_words_weight > 0 else False))
        module = UniPixelTrainModule(model, loss_cfg).to(info.device)
    else:
        raise ConfigError(f"objective {objective!r}: use unipixel, sam2_prompts or text_lm")
    sampler = ResumableSampler(len(dataset), seed=cfg["seed"], rank=info.rank, world_size=info.world_size)

    # (5) engines
    strategy = cfg["distributed"]["strategy"]
    optim_cfg = OptimConfig.from_dict(cfg["optim"])
    steps = int(cfg["steps"])
    engine = None
    if strategy == "deepspeed":
        try:
            import deepspeed  # optional: pip install deepspeed
        except ImportError as e:
            raise ConfigError("distributed.strategy=deepspeed needs DeepSpeed (pip install deepspeed); "
                              "or use --set distributed.strategy=ddp / fsdp2") from e


        ds_cfg = dict(cfg["distributed"].get("deepspeed") or {"zero_optimization": {"stage": 2}})
        ds_cfg.setdefault("train_micro_batch_size_per_gpu", 1)
        ds_cfg.setdefault("gradient_accumulation_steps", int(cfg["grad_accum"]))
        groups = param_groups(module, optim_cfg)
        for g in groups:
            g.pop("names")
        opt = torch.optim.AdamW(groups, lr=optim_cfg.lr, betas=optim_cfg.betas, weight_decay=optim_cfg.weight_decay)
        engine, opt, _, _ = deepspeed.initialize(model=module, optimizer=opt, config=ds_cfg)
        wrapped = engine
    else:
        wrapped = D.wrap_model(module, info, strategy, shard_units=shard_units, find_unused_parameters=True)
        opt = build_optimizer(wrapped, optim_cfg)
    sched = cosine_with_warmup(opt, steps, optim_cfg.warmup_steps, optim_cfg.min_lr_ratio)

    start = 0
    if resume and (ck := resume_checkpoint(run_dir)) is not None:
        st = load_checkpoint(ck, model, opt if strategy != "fsdp2" else None, sched,
                             strict=False)
        if strategy == "fsdp2":  # sharded optimizer: restore through torch's distributed state-dict API
            _load_fsdp_optimizer(ck, wrapped, opt)
        start = st.step
        sampler.load_state_dict(st.sampler)
    keys = source.group_keys() if cfg["data"].get("group_by_type") or objective == "sam2_prompts" else None
    batches = StepBatches(sampler, int(cfg["micro_batch"]), int(cfg["grad_accum"]), start, steps, keys)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, collate_fn=collate,
        num_workers=int(cfg["data"]["num_workers"]), persistent_workers=False,
        multiprocessing_context="fork" if int(cfg["data"]["num_workers"]) else None,
    )

    resolved = dict(cfg, _model_folder=str(model_folder), _parameters=n_all, _trainable=n_train,
                    _world_size=info.world_size)
    logger = RunLogger(run_dir, resolved, steps, enabled=info.is_main, tensorboard=cfg["log"]["tensorboard"],
                       progress=cfg["log"]["progress"] and sys.stderr.isatty(), start_step=start)
    if info.is_main:
        print(f"run {run_dir}: {n_all / 1e6:.2f}M parameters, {n_train / 1e6:.2f}M trainable, world {info.world_size}, "
              f"steps {start}->{steps}, {len(dataset)} items", flush=True)

    # (6) the loop
    autocast = (torch.autocast(info.device.type, dtype=torch.bfloat16) if cfg["bf16"] else nullcontext())
    acc = int(cfg["grad_accum"])
    ck_cfg, log_cfg = cfg["checkpoint"], cfg["log"]
    last_ck = time.monotonic()
    t0 = time.perf_counter()
    seen = 0
    it = iter(loader)
    step = start
    window: dict[str, list[float]] = {}
    stop_after = cfg.get("stop_after")
    interrupted = StopRequest()  # Ctrl-C / SIGTERM: finish the step, save a checkpoint, leave
    for step in range(start, steps):
        dataset.set_epoch(0)
        sums_step: dict[str, float] = {}
        counts_step: dict[str, int] = {}
        want_images = bool(log_cfg.get("images_every_steps")) and (step + 1) % log_cfg["images_every_steps"] == 0
        for m in range(acc):
            examples = next(it)
            sync = m == acc - 1
            ctx = wrapped.no_sync() if (not sync and hasattr(wrapped, "no_sync") and engine is None) else nullcontext()
            with ctx, autocast:
                loss, metrics, extras = wrapped(examples, keep_masks=want_images and m == 0)
            if engine is not None:
                engine.backward(loss)
            else:
                (loss / acc).backward()
            seen += len(examples)
            counts = metrics.pop("_counts", {})
            for k, v in metrics.items():  # sums and counts over the step's examples (means taken after all ranks)
                sums_step[k] = sums_step.get(k, 0.0) + v * counts.get(k, 1)
                counts_step[k] = counts_step.get(k, 0) + counts.get(k, 1)
            if want_images and m == 0 and info.is_main:
                _log_images(logger, examples, extras, step + 1)
        if engine is not None:
            engine.step()
        else:
            if cfg["max_grad_norm"]:
                torch.nn.utils.clip_grad_norm_([p for p in wrapped.parameters() if p.requires_grad],
                                               cfg["max_grad_norm"])
            opt.step()
            opt.zero_grad(set_to_none=True)
        sched.step()
        global_metrics = reduce_metrics(sums_step, counts_step, info)
        for k, v in global_metrics.items():
            window.setdefault(k, []).append(v)
        logger.tick(step + 1, global_metrics.get("loss"), seen * info.world_size / (time.perf_counter() - t0))
        if info.is_main:
            with open(run_dir / "losses.jsonl", "a") as f:
                f.write(json.dumps({"step": step + 1, **global_metrics}) + "\n")
        if (step + 1) % log_cfg["every_steps"] == 0 or step + 1 == steps:
            avg = {k: sum(v) / len(v) for k, v in window.items()}
            avg["lr"] = sched.get_last_lr()[0]
            logger.log(step + 1, avg, samples_seen=seen * info.world_size)
            if info.is_main and not logger._bar:
                el = time.perf_counter() - t0
                eta = el / (step + 1 - start) * (steps - step - 1)
                print(f"step {step + 1}/{steps} " + " ".join(f"{k} {v:.4g}" for k, v in avg.items())
                      + f" | {seen * info.world_size / el:.2f} samples/s | eta {eta / 60:.1f} min", flush=True)
            window = {}
        due = (ck_cfg["every_steps"] and (step + 1) % ck_cfg["every_steps"] == 0) or (
            ck_cfg["every_minutes"] and time.monotonic() - last_ck > 60 * ck_cfg["every_minutes"])
        stopping = stop_after is not None and step + 1 - start >= int(stop_after)
        stopping = stopping or interrupted.agreed(info)
        if due or stopping or step + 1 == steps:
            _checkpoint(run_dir, step + 1, wrapped, model, opt, sched, batches, info, strategy, ck_cfg, engine)
            last_ck = time.monotonic()
        if stopping:
            break

    interrupted.restore()
    if interrupted.signal is not None:
        logger.close()
        if info.is_main:
            print(f"interrupted: checkpoint at step {step + 1} in {run_dir}; continue with --resume", flush=True)
        D.finish(info)
        raise SystemExit(130)

    # (7) the result
    out = None
    if step + 1 == steps and cfg["final"]["save"] != "none":
        out = _final(cfg, run_dir, wrapped, model, processor, model_folder, info, strategy)
    logger.close()
    if info.is_main:
        print(f"done: {step + 1} steps, {seen * info.world_size / (time.perf_counter() - t0):.2f} samples/s", flush=True)
    D.finish(info)
    return out or run_dir


METRIC_KEYS = ("loss", "loss_lm", "loss_seg", "seg_focal", "seg_dice", "seg_iou", "seg_object_score", "loss_box_prompt",
               "loss_retrieval", "loss_visual_words", "loss_memory_words")


def reduce_metrics(sums: dict[str, float], counts: dict[str, int], info: D.DistInfo) -> dict[str, float]:
    """Per-example means over every rank's examples of the step; a fixed key list, so every rank makes the same
    collective calls whatever its examples were (a rank without a segmentation example still takes part)."""
    keys = sorted(set(METRIC_KEYS) | set(sums)) if not info.enabled else list(METRIC_KEYS)
    t = torch.tensor([[sums.get(k, 0.0), float(counts.get(k, 0))] for k in keys], dtype=torch.float64)
    if info.enabled:
        import torch.distributed as dist

        t = t.to(info.device)
        dist.all_reduce(t)
        t = t.cpu()
    return {k: float(t[i, 0] / t[i, 1]) for i, k in enumerate(keys) if t[i, 1] > 0}


def _checkpoint(run_dir, step, wrapped, model, opt, sched, batches, info, strategy, ck_cfg, engine) -> None:
    sampler_state = batches.state(step)
    if strategy == "fsdp2" and info.enabled:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        msd, osd = get_state_dict(wrapped, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        tensors = {k[len("model."):]: v for k, v in msd.items() if k.startswith("model.")}
        if ck_cfg["trainable_only"]:
            keep = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
            tensors = {k: v for k, v in tensors.items() if k in keep}
        if info.is_main:
            tensors = _dedupe(tensors)
            save_checkpoint(run_dir, step, model, None, sched, sampler_state, model_tensors=tensors,
                            keep=ck_cfg["keep"])
            _save_fsdp_opt(run_dir, step, osd)
        D.barrier(info)
        return
    if info.is_main:
        save_checkpoint(run_dir, step, model, opt if engine is None else opt, sched, sampler_state,
                        trainable_only=ck_cfg["trainable_only"], keep=ck_cfg["keep"])
    D.barrier(info)


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, seen = {}, set()
    for k, v in tensors.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape)) if v.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[k] = v.contiguous()
    return out


def _save_fsdp_opt(run_dir: Path, step: int, osd: dict) -> None:
    """The gathered optimizer state of an FSDP2 run (flattened to safetensors like the single-process one)."""
    from safetensors.torch import save_file


    tensors, meta = _flatten_optimizer(osd)
    folder = run_dir / "checkpoints" / f"step_{step:07d}"
    save_file(tensors, str(folder / "optimizer_fsdp.safetensors"))
    (folder / "optimizer_fsdp.json").write_text(json.dumps(meta))


def _load_fsdp_optimizer(ck: Path, wrapped, opt) -> None:
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict


    osd = _unflatten_optimizer(load_file(str(ck / "optimizer_fsdp.safetensors")),
                               json.loads((ck / "optimizer_fsdp.json").read_text()))
    set_optimizer_state_dict(wrapped, opt, osd, options=StateDictOptions(full_state_dict=True))


def _final(cfg, run_dir, wrapped, model, processor, model_folder, info, strategy) -> Path | None:
    """Merged full model folder (config + safetensors + tokenizer) or the trainable-only partial file."""

    if strategy == "fsdp2" and info.enabled:
        tensors = {k[len("model."):]: v for k, v in D.full_state_dict(wrapped, info).items()}
    else:
        tensors = None
    if not info.is_main:
        return None
    out = Path(cfg["final"]["path"] or run_dir / "final")
    if tensors is not None:
        model.load_state_dict(tensors, strict=False)
    if cfg["final"]["save"] == "partial":
        from safetensors.torch import save_file

        out.mkdir(parents=True, exist_ok=True)
        save_file(model_state(model, trainable_only=True), str(out / "partial.safetensors"))
        return out
    model = merge_lora(model)
    model.eval()
    model.save_pretrained(out, float16=cfg["final"]["float16"])
    copy_processor_files(model_folder, out)
    return out


def _log_images(logger, examples, extras, step: int) -> None:
    """A few predicted masks (first frame) next to the ground truth, as TensorBoard images."""
    import numpy as np


    for k, (ex, extra) in enumerate(zip(examples, extras)):
        pred = extra.get("pred_masks")
        if pred is None or k >= 2:
            continue
        frame = ex.frames_rgb[0]
        h, w = frame.shape[:2]
        p = torch.nn.functional.interpolate(pred[:, 0:1].float(), size=(h, w))[:, 0].numpy() > 0.5
        g = torch.nn.functional.interpolate(ex.seg_targets[:, 0:1].float(), size=(h, w))[:, 0].numpy() > 0.5
        try:
            img = np.concatenate([overlay_masks(frame, list(g)), overlay_masks(frame, list(p))], axis=1)
        except Exception:  # noqa: BLE001  (logging must never stop training)
            continue
        logger.image(f"masks/{ex.data_type}_{k}", img, step)


def run(config: str | Path | None = None, overrides: Sequence[str] = (), resume: bool = False,
        overwrite: bool = False) -> Path:
    return train(load_config(config, list(overrides)), resume=resume, overwrite=overwrite)


def main(argv: list[str] | None = None) -> None:
    recipe_cli(run, __doc__.split("\n")[0], argv)


if __name__ == "__main__":
    main()
