"""The family contract as code: every registered family's pipeline takes the shared query options by name (none
swallowed by `**kwargs`), refuses what it cannot honour, and its package exports config, model, processor and
pipeline."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest

from pixelwise.core.errors import ConfigError, PixelwiseError
from pixelwise.pipeline import _FAMILIES
from pixelwise.pipeline.base import Pipeline

FAMILIES = {mt: target for mt, target in _FAMILIES.items() if isinstance(target, str)}


def _pipeline_class(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_every_family_takes_the_shared_options_by_name(model_type):
    cls = _pipeline_class(FAMILIES[model_type])
    for verb, names in (("segment", Pipeline.QUERY_OPTIONS), ("ask", Pipeline.QUERY_OPTIONS),
                        ("chat", tuple(n for n in Pipeline.QUERY_OPTIONS if n != "max_new_tokens"))):
        params = inspect.signature(getattr(cls, verb)).parameters
        assert not [p for p in params.values() if p.kind is p.VAR_KEYWORD], f"{cls.__name__}.{verb} takes **kwargs"
        missing = [n for n in names if n not in params]
        assert not missing, f"{cls.__name__}.{verb} lacks {missing}"


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_every_family_package_exports_its_parts(model_type):
    cls = _pipeline_class(FAMILIES[model_type])
    package = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
    exported = set(package.__all__)
    assert cls.__name__ in exported
    for suffix in ("Config", "Processor"):
        assert any(n.endswith(suffix) for n in exported), f"{package.__name__} exports no *{suffix}"
    assert any(n.endswith(("Model", "ForSegmentation", "ForConditionalGeneration")) for n in exported)


def test_an_image_family_refuses_what_it_cannot_honour():
    import pixelwise
    from pixelwise.pipeline import DEFAULT_MODEL

    pipe = pixelwise.load(DEFAULT_MODEL.parent / "pixellm-tiny", device="cpu", threads=1)
    clip = np.zeros((4, 32, 32, 3), np.uint8)
    with pytest.raises(PixelwiseError, match="reads images"):
        pipe.segment(clip, "the red circle")  # a clip without saying which frame
    with pytest.raises(ConfigError, match="reads one frame"):
        pipe.segment(clip, "the red circle", frame_indices=[0, 2])
    with pytest.raises(ConfigError, match="propagate"):
        pipe.segment(clip[:1], "the red circle", propagate="every")
    result = pipe.segment(clip, "the red circle", frame_indices=[2], max_new_tokens=4)
    assert result.frame_indices == [2]  # the frame asked for, not silently frame 0
