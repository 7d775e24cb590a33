"""Instrument: can VITRON's region encoder tell regions apart? Measured at each stage of the way in.

    python -m pixelwise.recipes.vitron.region_probe MODEL [--data DIR] [--num 40]

For the first `num` region prompts of a PixelWorld region folder: the front end's features pooled under each region's
mask, the mean front-end feature of each frame, the region encoder's feature MLP and location MLP, and the
`<region>` embedding the LLM receives. Per stage: the mean cosine between prompts (1.0 = one vector for every
region), the mean norm, and the spread (mean distance from the prompts' mean). A stage whose cosine is ~1 with a small
spread has lost the region; the first such stage is where to look.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

import pixelwise
from pixelwise.data.pixelworld.dataset import PixelWorldDataset


def _stats(rows: list[torch.Tensor]) -> dict[str, float]:
    e = torch.stack(rows).float()
    n = F.normalize(e, dim=-1)
    c = n @ n.T
    off = c[~torch.eye(len(e), dtype=torch.bool)]
    return {"cosine": round(float(off.mean()), 4), "norm": round(float(e.norm(dim=-1).mean()), 3),
            "spread": round(float((e - e.mean(0)).norm(dim=-1).mean()), 3)}


@torch.no_grad()
def region_probe(model: str, data: str, num: int = 40) -> dict[str, dict[str, float]]:
    pipe = pixelwise.load(model, device="cpu")
    net, proc = pipe.model, pipe.processor
    ds = PixelWorldDataset(data, tasks=["region"])
    stages: dict[str, list[torch.Tensor]] = {k: [] for k in ("pooled", "frame_mean", "region_feat", "region_loc",
                                                             "embedding")}
    for i in range(min(num, len(ds))):
        it = ds[i]
        inp = proc.build(it.frames[0], it.question, prompts=it.prompts)
        feats = net.encode_frames(inp.patches, inp.grid)
        pooled = net.region_pooled(inp, feats)[0]
        t = min(inp.region_frames[0], feats.shape[0] - 1)
        stages["pooled"].append(pooled)
        stages["frame_mean"].append(feats[t].mean(0))
        stages["region_feat"].append(net.region_feat(pooled[None])[0])
        stages["region_loc"].append(net.region_loc(inp.region_boxes[:1])[0])
        stages["embedding"].append(net.region_embeddings(inp, feats)[0])
    return {k: _stats(v) for k, v in stages.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", default="runs/fam-eval/test-region-img")
    ap.add_argument("--num", type=int, default=40)
    args = ap.parse_args(argv)
    print(json.dumps(region_probe(args.model, args.data, args.num), indent=2))


if __name__ == "__main__":
    main()
