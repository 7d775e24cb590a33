"""Fuzz scale: `PIXELWISE_FUZZ_SCALE=20 pytest tests/reliability` runs every property test with 20x the CI examples."""

import os

SCALE = max(1, int(os.environ.get("PIXELWISE_FUZZ_SCALE", "1")))
