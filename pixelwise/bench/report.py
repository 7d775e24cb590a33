"""Human-readable summaries of a `pixelwise bench` JSON report."""

from __future__ import annotations

from typing import Any


def _ms(stats: Any) -> str:
    if isinstance(stats, dict):
        return f"{1000 * stats['median']:.0f} ms (min {1000 * stats['min']:.0f}, max {1000 * stats['max']:.0f}, n={stats['n']})"
    return f"{1000 * float(stats):.0f} ms"


def summary_lines(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    end = m.get("load_average_end")
    lines = [(f"machine: {m['cpu']} x{m['cpu_count']}, torch {m['torch']} ({m['torch_threads']} threads), "
              f"cuda: {m['cuda'] or 'none'}, load average {m['load_average'][0]:.1f} -> "
              f"{f'{end[0]:.1f}' if end else '?'}")]
    if "model" in report:
        lines.append(f"model: {report['model'].get('name')} ({report['model']['parameters'] / 1e6:.1f} M parameters, "
                     f"{report['model']['device']}, {report['model']['dtype']})")
    c = report["cases"]
    if "image" in c:
        lines.append(f"image query: {_ms(c['image']['latency_s'])}, {c['image']['generated_tokens']} tokens")
    if "video" in c:
        v = c["video"]
        lines.append(f"video query ({v['llm_frames']} frames): {_ms(v['latency_s'])}, {v['generated_tokens']} tokens")
    if "stages" in c:
        s = c["stages"]
        lines.append(f"stages ({s['frames']} frames): vision {_ms(s['vision_encoder_s'])}, prefill "
                     f"{_ms(s['llm_prefill_s'])}, decode {s['decode_tokens_per_s']:.1f} tok/s, SAM2 encode "
                     f"{s['sam2_encode_ms_per_frame']:.1f} ms/frame, propagation {s['propagation_ms_per_frame']:.1f} ms/frame")
    if "objects" in c:
        for r in c["objects"]["rows"]:
            line = f"{r['objects']} object(s), {r['frames']} frames: {_ms(r['optimised_s'])}"
            if "reference_s" in r:
                line += (f" vs reference {_ms(r['reference_s'])} -> {r['speedup']:.2f}x, same masks: {r['same_masks']}"
                         f", SAM2 frames encoded {r['optimised_sam2_frames_encoded']} vs {r['reference_sam2_frames_encoded']}")
            lines.append(line)
    if "length" in c and "rows" in c["length"]:
        for r in c["length"]["rows"]:
            lines.append(f"{'reference' if r['reference'] else 'optimised'} {r['frames']} frames: peak RSS "
                         f"{r['peak_rss_mb']:.0f} MB (+{r['rss_growth_mb']:.0f} MB during query + save), "
                         f"{r['propagation_ms_per_frame']:.1f} ms/frame; query alone: peak "
                         f"{r.get('query_peak_rss_mb', float('nan')):.0f} MB")
        for k in ("optimised", "reference"):
            if f"{k}_peak_rss_ratio_1000_vs_100" in c["length"]:
                lines.append(f"{k}: peak RSS 1000 / 100 frames = {c['length'][f'{k}_peak_rss_ratio_1000_vs_100']:.3f}"
                             f" (query alone {c['length'].get(f'{k}_query_peak_rss_ratio_1000_vs_100', float('nan')):.3f})")
    if "throughput" in c:
        t = c["throughput"]
        line = f"throughput: {t['queries_per_s']:.2f} image queries/s one by one"
        if "per_image_queries_per_s" in t:
            line += (f", {t['per_image_queries_per_s']:.2f}/s with segment_many (3 texts per image) -> "
                     f"{t['per_image_speedup']:.2f}x, same answers: {t['same_answers']}")
        lines.append(line)
        for size, b in t.get("batched", {}).items():
            lines.append(f"  run_batch, batch {size}: {b['queries_per_s']:.2f} queries/s -> {b['speedup']:.2f}x, "
                         f"same answers: {b['same_answers']}")
    if "train" in c:
        t = c["train"]
        lines.append(f"training ({t['config']}, micro-batch {t['micro_batch']}, {t['torch_threads']} threads): "
                     f"{t['samples_per_s']:.2f} samples/s ({t['samples_per_repeat']} samples in {_ms(t['run_s'])})")
    return lines
