#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one call on a lent accelerator (issue #19), sized to ~8 minutes so a rerun
# fits the ~15-minute device budget. Run from the repository root on the device machine:
#     bash tools/device/gpu_figures.sh            # writes $OUT/ (or outputs/gpu/) : JSON reports + a log
# It installs nothing it cannot find locally: the device machine has no network; it needs torch with CUDA there.
set -uo pipefail
out="${OUT:-outputs/gpu}"; mkdir -p "$out"
log="$out/log.txt"
py="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  # 1. UniPixel-3B shapes, random weights, bf16 + SDPA: image and 16-frame video query latency, 1/3/8 objects vs the
  #    reference mode, 1,000-frame propagation peak memory (CUDA max allocated).
  echo "== 3B shapes: image, video, objects (reference mode side by side)"
  timeout 300 $py -m pixelwise bench --shapes 3b --device cuda --dtype bfloat16 -c image -c video -c objects \
      --objects 1,3,8 -n 5 --out "$out/bench-3b.json"
  echo "== 3B shapes: clip length 16 / 100 / 1000 frames (peak CUDA memory)"
  timeout 180 $py -m pixelwise bench --shapes 3b --device cuda --dtype bfloat16 -c length --lengths 16,100,1000 \
      -n 1 --out "$out/bench-3b-length.json"
  # 2. the default model on the GPU, same cases, for the CPU-vs-GPU table
  echo "== default model on the GPU"
  timeout 90 $py -m pixelwise bench --device cuda -c image -c video -c objects -n 5 --out "$out/bench-tiny.json"
  # 3. sharded evaluation on the GPU: one rank (one chip) vs the CPU figure of docs/benchmarks.md
  echo "== PixelWorld evaluation on the GPU (100 test samples per row)"
  timeout 120 $py -m pixelwise.recipes.eval_pixelworld --out "$out/eval" --splits test --num 100 \
      --rows image_referring video_referring
} 2>&1 | tee "$log"
