"""Evaluation: official-exact metrics (`metrics`), benchmark aggregation protocols (`protocols`), and the runner that
scores predictions or a `Predictor` on a benchmark (`runner`)."""

import importlib
from types import ModuleType

# Benchmarks that run a model on a native PixelWorld folder (no public layout) -> their module in `pixelwise.eval`,
# which has `run` (`pixelwise eval`), `evaluate` and `model_predictor` (`pixelwise bench compare`).
NATIVE_BENCHMARKS = {"pixelworld-editing": "editing", "pixelworld-region": "region_questions", "pixelworld-boxes": "boxes"}


def native_benchmark(name: str) -> ModuleType | None:
    """The evaluator module of a native benchmark `name` (an optional `:variant` ignored), imported on demand; None
    for the benchmarks of public layouts (`eval.benchmarks`)."""
    module = NATIVE_BENCHMARKS.get(name.partition(":")[0])
    return importlib.import_module(f"pixelwise.eval.{module}") if module else None
