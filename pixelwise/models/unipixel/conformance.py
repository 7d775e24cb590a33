"""Conformance runner: check our UniPixel against test vectors produced by the official implementation.

A vectors folder holds `cases.json` (every case: messages, exact chat text, input ids, tensors with tolerances),
`media.safetensors` (raw media + the official processor outputs), one `case_<name>.safetensors` per case and the
official-layout `checkpoint/`. Each case is run *generically* from that description:
1. processor: raw frames + messages -> chat text, input ids, resized frames, patches, SAM2 frames (bit-exact);
   `<|ref|>` prompts come from the case's `in.point_*` tensors, `<|mem|>` masks from `in.label_mask` (then pooled
   by our processor and compared with `in.label_mask_pooled` / `in.refer_mask` and the `mem_prefix` text);
2. model: prefill (teacher forcing) or greedy generation, then SAM2 for every `<|seg|>` as one batch;
3. every `out.*` tensor of the case must be produced and match within its tolerance; `dbg.*` tensors are compared
   when we produce them (reported as n/a otherwise, never silently passed as matches).

Nothing here knows a case by name: hidden sets with other seeds, sizes and frame counts run the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelwise.core.errors import FormatError
from pixelwise.core.media import uniform_indices
from pixelwise.models.unipixel.modeling_unipixel import UniPixelForConditionalGeneration
from pixelwise.models.unipixel.processing_unipixel import RefPrompt, UniPixelProcessor, mem_prefix, render_chat

SUPPORTED_FORMAT = 1
MAX_MASK_FLIP_MARGIN = 1e-2  # a mask pixel may only flip where the reference logit is this close to 0


# ----------------------------------------------------------------------------------------------- results


@dataclass
class Check:
    """One compared quantity. `status`: pass, fail, missing (expected but not produced), n/a (debug, not produced)."""

    key: str
    status: str
    max_abs: float | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "missing")


@dataclass
class CaseResult:
    name: str
    kind: str
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and not any(c.failed for c in self.checks)

    def _max(self, pred: Callable[[str], bool]) -> float | None:
        vals = [c.max_abs for c in self.checks if pred(c.key) and c.max_abs is not None]
        return max(vals) if vals else None

    @property
    def logits_diff(self) -> float | None:
        return self._max(lambda k: k in ("out.logits", "out.step_logits"))

    @property
    def mask_logits_diff(self) -> float | None:
        return self._max(lambda k: k.startswith("out.seg") and k.endswith(".mask_logits"))

    @property
    def mask_agreement(self) -> float | None:
        vals = [1.0 - c.max_abs for c in self.checks
                if c.key.startswith("out.seg") and c.key.endswith(".masks") and c.max_abs is not None]
        return min(vals) if vals else None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]


@dataclass
class ConformanceReport:
    directory: str
    cases: list[CaseResult]
    load_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "passed": self.passed,
            "cases": [
                {
                    "name": c.name, "kind": c.kind, "passed": c.passed, "error": c.error, "seconds": c.seconds,
                    "logits_max_abs": c.logits_diff, "mask_logits_max_abs": c.mask_logits_diff,
                    "mask_agreement": c.mask_agreement, "notes": c.notes,
                    "checks": [vars(k) for k in c.checks],
                }
                for c in self.cases
            ],
        }


# ----------------------------------------------------------------------------------------------- comparison


def compare(key: str, produced: Any, expected: Any, tolerance: dict[str, Any],
            reference_logits: torch.Tensor | None = None) -> Check:
    """Compare one quantity under a cases.json tolerance (`exact`, `atol`/`rtol`, `max_mismatch_fraction`)."""
    if isinstance(expected, (str, list)) and not isinstance(expected, torch.Tensor):
        ok = produced == expected
        detail = "" if ok else _first_difference(produced, expected)
        return Check(key, "pass" if ok else "fail", None if isinstance(expected, str) else (0.0 if ok else None), detail)
    a = produced if isinstance(produced, torch.Tensor) else torch.as_tensor(np.asarray(produced))
    b = expected
    a = a.detach().cpu()
    if a.shape != b.shape:
        if a.numel() == b.numel():
            a = a.reshape(b.shape)
        else:
            return Check(key, "fail", None, f"shape {tuple(a.shape)} != expected {tuple(b.shape)}")
    if "max_mismatch_fraction" in tolerance:
        diff = a.to(torch.bool) != b.to(torch.bool)
        frac = float(diff.float().mean()) if diff.numel() else 0.0
        ok = frac <= float(tolerance["max_mismatch_fraction"])
        detail = f"{int(diff.sum())} of {diff.numel()} pixels differ"
        if reference_logits is not None and diff.any():
            far = diff & (reference_logits.reshape(diff.shape).abs() > MAX_MASK_FLIP_MARGIN)
            if far.any():
                ok = False
                detail += f"; {int(far.sum())} where |reference logit| > {MAX_MASK_FLIP_MARGIN}"
        return Check(key, "pass" if ok else "fail", frac, detail)
    if tolerance.get("exact"):
        if a.dtype.is_floating_point or b.dtype.is_floating_point:
            d = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
            ok = bool(torch.equal(a.to(b.dtype), b)) and not torch.isnan(a.double()).any()
        else:
            d = float((a.long() - b.long()).abs().max()) if a.numel() else 0.0
            ok = bool(torch.equal(a.long(), b.long()))
        return Check(key, "pass" if ok else "fail", d, "" if ok else "not bit-exact")
    atol, rtol = float(tolerance.get("atol", 0.0)), float(tolerance.get("rtol", 0.0))
    a64, b64 = a.double(), b.double()
    err = (a64 - b64).abs()
    d = float(err.max()) if err.numel() else 0.0
    bad = ~(err <= atol + rtol * b64.abs())  # NaN counts as bad
    ok = not bool(bad.any())
    detail = "" if ok else f"{int(bad.sum())} of {bad.numel()} values outside atol {atol:g} + rtol {rtol:g}"
    return Check(key, "pass" if ok else "fail", d, detail)


def _first_difference(a: Any, b: Any) -> str:
    if isinstance(a, str) and isinstance(b, str):
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        return f"differs at char {i}: {a[i:i + 30]!r} vs {b[i:i + 30]!r}"
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"length {len(a)} != expected {len(b)}"
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return f"differs at index {i}: {a[i]} vs {b[i]}"
    return "differs"


# ----------------------------------------------------------------------------------------------- running


_EXACT = {"exact": True}
# Names of per-object SAM2 outputs in the vectors -> attribute of the SAM2 module's tracking output.
_SAM2_OUTPUT_ALIASES = {"decoder_sparse_prompt_frame0": ("sparse_prompt", "decoder_sparse_prompt_frame0")}


def load_vectors(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    directory = Path(directory)
    spec_file = directory / "cases.json"
    if not spec_file.is_file():
        raise FormatError(f"{directory}: no cases.json (not a conformance vectors folder)")
    try:
        spec = json.loads(spec_file.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(f"{spec_file}: invalid JSON ({e})") from e
    if spec.get("format_version") != SUPPORTED_FORMAT:
        raise FormatError(f"{spec_file}: format_version {spec.get('format_version')!r}, expected {SUPPORTED_FORMAT}")
    if not isinstance(spec.get("cases"), list) or not spec["cases"]:
        raise FormatError(f"{spec_file}: no cases")
    media_file = directory / spec.get("media", {}).get("file", "media.safetensors")
    if not media_file.is_file():
        raise FormatError(f"{directory}: missing {media_file.name}")
    return spec, load_file(str(media_file))


def run_conformance(directory: str | Path, only: list[str] | None = None,
                    progress: Callable[[CaseResult], None] | None = None) -> ConformanceReport:
    """Load the checkpoint through our loader, run every case of `cases.json`, compare every output."""
    from safetensors.torch import load_file


    directory = Path(directory)
    spec, media = load_vectors(directory)
    ckpt = directory / spec.get("checkpoint", "checkpoint")
    t0 = time.perf_counter()
    model = UniPixelForConditionalGeneration.from_pretrained(ckpt)
    processor = UniPixelProcessor.from_pretrained(ckpt)
    load_seconds = time.perf_counter() - t0
    cases = [c for c in spec["cases"] if not only or c["name"] in only]
    if only and len(cases) != len(set(only)):
        unknown = set(only) - {c["name"] for c in cases}
        raise FormatError(f"unknown case(s): {', '.join(sorted(unknown))}")
    results = []
    for case in cases:
        result = CaseResult(case["name"], case.get("kind", "?"))
        t1 = time.perf_counter()
        try:
            tensors = load_file(str(directory / case["file"]))
            with torch.no_grad():
                _run_case(model, processor, case, tensors, media, result, spec.get("media"))
        except Exception as e:  # noqa: BLE001  (report, keep going: one broken case must not hide the others)
            result.error = f"{type(e).__name__}: {e}"
        result.seconds = time.perf_counter() - t1
        results.append(result)
        if progress is not None:
            progress(result)
    return ConformanceReport(str(directory), results, load_seconds)


def _run_case(model, processor, case: dict[str, Any], tensors: dict[str, torch.Tensor],
              media: dict[str, torch.Tensor], result: CaseResult, spec_media: dict[str, Any] | None = None) -> None:
    spec_tensors: dict[str, Any] = case.get("tensors", {})
    produced: dict[str, Any] = {}
    checks = result.checks

    # ---------------------------------------------------------------- processor
    keys = case["shared_media_keys"]
    frames = media[keys["frames"]].numpy()
    _check_sampling(case, keys, media, spec_media, checks)
    messages = case["messages"]
    generation_prompt = messages[-1].get("role") != "assistant"
    rendered = render_chat(messages, add_generation_prompt=generation_prompt)
    expected_chat = case["chat_text"]
    prefix = ""
    if generation_prompt and expected_chat.startswith(rendered) and len(expected_chat) > len(rendered):
        # The vectors store a primed answer ("The best option is (") only in the chat text.
        prefix = expected_chat[len(rendered):]
        result.notes.append(f"assistant primed with {prefix!r}")
    fps = case.get("fps") or [None]
    inputs = processor(frames, messages, assistant_prefix=prefix, fps=fps[0])
    checks.append(compare("text.chat_text", inputs.chat_text, expected_chat, _EXACT))
    checks.append(compare("text.input_ids", inputs.input_ids.tolist(), list(case["input_ids"]), _EXACT))
    for name in ("llm_frames", "pixel_values_videos", "sam2_frames"):
        if name in keys:
            mine = inputs.llm_frames if name == "llm_frames" else getattr(inputs, name)
            checks.append(compare(f"media.{name}", torch.as_tensor(np.asarray(mine)), media[keys[name]], _EXACT))
    produced.update({
        "in.input_ids": inputs.input_ids,
        "in.attention_mask": inputs.attention_mask,
        "in.video_grid_thw": inputs.video_grid_thw,
        "in.second_per_grid_ts": inputs.second_per_grid_ts,
        "in.frame_size": torch.tensor(inputs.frame_size, dtype=torch.int64),
    })

    # <|ref|> prompts: given in SAM2-frame coordinates by the vectors (inputs, not outputs).
    n_ref = sum(1 for k in tensors if k.startswith("in.point_coords."))
    if n_ref:
        frames_idx = tensors["in.point_frames"]
        inputs.ref_prompts = [
            RefPrompt(tensors[f"in.point_coords.{i}"], tensors[f"in.point_labels.{i}"], int(frames_idx[i]))
            for i in range(n_ref)
        ]
    # <|mem|> masks: raw per-frame object masks -> our pooling -> refer_mask and the prefix text.
    if "in.label_mask" in tensors:
        pooled, refer = processor.memory_inputs(tensors["in.label_mask"], inputs.video_grid_thw)
        produced["in.label_mask_pooled"], produced["in.refer_mask"] = pooled, refer
        inputs.refer_mask = refer
        if "mem_prefix" in case:
            text = mem_prefix(refer, num_frames=frames.shape[0], is_image=case.get("media") == "image")
            checks.append(compare("text.mem_prefix", text, case["mem_prefix"], _EXACT))

    kind = case.get("kind", "")
    seg_states = None
    if kind != "processor":
        # ---------------------------------------------------------------- model
        if kind == "generate":
            expected_ids = list(case["generated_ids"])
            gen = model.generate(inputs, max_new_tokens=len(expected_ids))
            checks.append(compare("text.generated_ids", gen.generated_ids.tolist(), expected_ids, _EXACT))
            produced["out.generated_ids"] = gen.generated_ids
            produced["out.step_logits"] = gen.step_logits
            produced["dbg.step_prenorm_hidden"] = gen.step_prenorm_hidden
            out = gen.prefill
            seg_states = gen.seg_states
        else:
            out = model(inputs)
            produced["out.logits"] = out.logits
            produced["out.prenorm_hidden"] = out.prenorm_hidden
            produced["dbg.seg_head_all"] = model.seg_head(out.prenorm_hidden)
            produced["dbg.seg_source_positions"] = torch.tensor(out.seg_positions, dtype=torch.int64)
            if out.seg_positions:
                seg_states = out.prenorm_hidden[out.seg_positions]
        produced["dbg.position_ids"] = out.position_ids
        produced["dbg.rope_deltas"] = torch.tensor([out.rope_delta], dtype=torch.int64)
        for name, value in (("dbg.video_embeds", out.video_embeds), ("dbg.merger_mlp_input", out.merger_input),
                            ("dbg.window_index", out.window_index), ("dbg.ref_proj_input", out.ref_proj_input),
                            ("dbg.ref_embeds", out.ref_embeds), ("out.mem_pooled_features", out.mem_pooled),
                            ("dbg.mem_embeds", out.mem_embeds)):
            if value is not None:
                produced[name] = value
        for i, sparse in enumerate(out.ref_sparse):
            produced[f"dbg.ref_encoder_sparse.{i}"] = sparse

        # ---------------------------------------------------------------- SAM2
        if seg_states is not None and seg_states.shape[0]:
            prompts = model.seg_prompt_tokens(seg_states)
            for k in range(prompts.shape[0]):
                produced[f"out.seg{k}.prompt_tokens"] = prompts[k]
            if model.sam2 is None:
                result.notes.append(f"pending: {model.sam2_unavailable}")
            else:
                seg = model.segment(seg_states, inputs.sam2_frames, inputs.frame_size)
                _collect_sam2(seg.sam2, prompts.shape[0], spec_tensors, produced)
                produced.update(_sam2_debug(seg.features))

    # ---------------------------------------------------------------- compare every described tensor
    for key, meta in spec_tensors.items():
        if key not in tensors:
            checks.append(Check(key, "fail", None, "described in cases.json but absent from the case file"))
            continue
        tol = meta.get("tolerance", _EXACT)
        if key in produced:
            ref_logits = None
            if key.endswith(".masks"):
                ref_logits = tensors.get(key[: -len(".masks")] + ".mask_logits")
            checks.append(compare(key, produced[key], tensors[key], tol, ref_logits))
        elif key.startswith("in."):
            checks.append(Check(key, "n/a", None, "input taken from the vectors"))
        elif key.startswith("out."):
            why = "not produced"
            if key.startswith("out.seg") and model.sam2 is None:
                why = f"pending: {model.sam2_unavailable}"
            checks.append(Check(key, "missing", None, why))
        else:
            checks.append(Check(key, "n/a", None, "debug tensor not exposed by our implementation"))


def _check_sampling(case: dict[str, Any], keys: dict[str, str], media: dict[str, torch.Tensor],
                    spec_media: dict[str, Any] | None, checks: list[Check]) -> None:
    """For a video given as raw frames + sampled indices: our uniform sampling picks the same frames."""

    prefix = keys["frames"].rsplit(".", 1)[0]
    raw, idx = media.get(f"{prefix}.raw_frames"), media.get(f"{prefix}.sample_indices")
    count = ((spec_media or {}).get(case.get("media", ""), {}) or {}).get("sample_frames")
    if raw is None or idx is None or not count:
        return
    mine = uniform_indices(int(raw.shape[0]), int(count))
    checks.append(compare("media.sample_indices", mine, idx.tolist(), _EXACT))
    checks.append(compare("media.frames", raw[mine], media[keys["frames"]], _EXACT))


def _collect_sam2(sam2_out: Any, num_objects: int, spec_tensors: dict[str, Any], produced: dict[str, Any]) -> None:
    """Per-object SAM2 outputs named as in the vectors (`out.seg{k}.{name}`), read from the module's output."""
    names = {k.split(".", 2)[2] for k in spec_tensors if k.startswith("out.seg") and k.count(".") >= 2}
    for name in names:
        if name == "prompt_tokens":
            continue
        value = None
        for attr in (name, *_SAM2_OUTPUT_ALIASES.get(name, ())):
            value = getattr(sam2_out, attr, None)
            if value is not None:
                break
        if value is None:
            continue
        for k in range(num_objects):
            produced[f"out.seg{k}.{name}"] = value[k]


def _sam2_debug(feats: Any) -> dict[str, torch.Tensor]:
    """Frame-0 SAM2 encoder features under the vectors' debug names (those our feature cache keeps)."""
    names = {
        "dbg.sam2_cached.fpn0_frame0": "high_res_s0",  # stride-4 level after conv_s0
        "dbg.sam2_cached.fpn1_frame0": "high_res_s1",  # stride-8 level after conv_s1
        "dbg.sam2_cached.fpn2_frame0": "embed",  # stride-16 level = image embedding
        "dbg.sam2_image_encoder.fpn2_frame0": "embed",
        "dbg.sam2_image_encoder.pos2_frame0": "pos",
    }
    out = {}
    for key, attr in names.items():
        value = getattr(feats, attr, None)
        if isinstance(value, torch.Tensor):
            out[key] = value[0]
    return out


# ----------------------------------------------------------------------------------------------- table


def format_value(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}e}"


def render_table(report: ConformanceReport, console=None, verbose: bool = False) -> None:
    """Rich table: one row per case with the max diffs and the first failures."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # logs and CI: do not wrap the table at 80 columns
    table = Table(title=f"UniPixel conformance — {report.directory}", show_lines=False)
    for col in ("case", "kind", "result", "checks", "logits max|Δ|", "mask-logit max|Δ|", "mask agree", "time s"):
        table.add_column(col, no_wrap=True)
    table.add_column("notes / first failure", overflow="fold")
    for c in report.cases:
        counted = [k for k in c.checks if k.status in ("pass", "fail", "missing")]
        n_pass = sum(1 for k in counted if k.status == "pass")
        if c.error:
            note = c.error
        elif c.failures:
            f = c.failures[0]
            note = f"{f.key}: {f.detail or f.status}" + (f" (+{len(c.failures) - 1} more)" if len(c.failures) > 1 else "")
        else:
            note = "; ".join(c.notes)
        agree = c.mask_agreement
        table.add_row(
            c.name, c.kind, "[green]PASS[/green]" if c.passed else "[red]FAIL[/red]", f"{n_pass}/{len(counted)}",
            format_value(c.logits_diff), format_value(c.mask_logits_diff),
            "-" if agree is None else f"{agree * 100:.3f}%", f"{c.seconds:.2f}", note,
        )
    console.print(table)
    if verbose:
        for c in report.cases:
            console.print(f"[bold]{c.name}[/bold]")
            for k in c.checks:
                console.print(f"  {k.status:7s} {k.key:45s} {format_value(k.max_abs)} {k.detail}")
    n_ok = sum(c.passed for c in report.cases)
    verdict = "[green]all cases pass[/green]" if report.passed else f"[red]{len(report.cases) - n_ok} case(s) fail[/red]"
    console.print(f"{n_ok}/{len(report.cases)} cases pass — {verdict} (checkpoint load {report.load_seconds:.2f} s)")
