"""Media loaders on hostile and unusual files: every class ends in a decoded clip or a typed MediaError."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixelwise.core.errors import MediaError, MediaTooLargeError
from pixelwise.core.media import MediaLimits, load_media, open_media
from tools.robustness.corpus import media_cases
from tools.robustness.run import run_library
from tests.reliability.conftest import SCALE

DATA = Path(__file__).with_name("data")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("media_corpus")
    return {c.name: c for c in media_cases(root, random.Random(0), n_random=20)}


def test_every_media_case_is_clip_or_typed_error(corpus):
    outcomes = [run_library(c) for c in corpus.values()]
    failures = [(o.case.name, o.failures) for o in outcomes if o.failures]
    assert failures == []
    kinds = {c.kind for c in corpus.values()}
    for kind in ("truncated video", "truncated image", "random bytes", "zero-frame video", "16-bit PNG", "CMYK JPEG",
                 "palette PNG", "variable-frame-rate video", "rotated video", "1x1 image", "oversize header (bomb)"):
        assert kind in kinds


def test_defined_clamps(corpus):
    gray16 = load_media(corpus["gray16.png"].path).frames[0]
    assert gray16.dtype == np.uint8 and gray16.max() == 255 and np.array_equal(gray16[..., 0], gray16[..., 2])
    cmyk = load_media(corpus["cmyk.jpg"].path).frames[0]
    rgb = load_media(corpus["png_named.jpg"].path).frames[0]
    assert cmyk.shape == rgb.shape and np.abs(cmyk.astype(int) - rgb.astype(int)).mean() < 12
    assert load_media(corpus["exif_rotated.jpg"].path).size == (64, 48)  # EXIF orientation applied
    assert load_media(corpus["one_pixel.png"].path).size == (1, 1)
    pal = load_media(corpus["palette.png"].path).frames[0]
    assert np.abs(pal.astype(int) - rgb.astype(int)).mean() < 12
    vfr = open_media(corpus["vfr.mp4"].path)
    assert vfr.num_frames == 8 and vfr.read().num_frames == 8
    rot = load_media(corpus["rotated.mp4"].path)
    assert rot.size == (48, 64)  # stored orientation: the display-rotation tag is not applied
    assert load_media(corpus["frame_folder"].path).num_frames == 3


@pytest.mark.parametrize("name, error, words", [
    ("huge_header.png", MediaTooLargeError, "exceeds (the )?limit"),
    ("wide_header.png", MediaTooLargeError, "exceeds (the )?limit"),
    ("zero_size.png", MediaError, None),
    ("mp4_header_only.mp4", MediaError, None),
    ("empty_folder", MediaError, "no image frames"),
    ("missing.mp4", MediaError, "no such file"),
    ("text.png", MediaError, "not a readable image"),
])
def test_typed_errors_name_the_input(corpus, name, error, words):
    start = time.perf_counter()
    with pytest.raises(error, match=words) as e:
        load_media(corpus[name].path, num_frames=4)
    assert name in str(e.value)
    assert time.perf_counter() - start < 5  # refused from the header, nothing decoded


def test_video_stream_with_unknown_codec():
    """Regression: a mutated WebM whose stream has no codec context crashed with AttributeError."""
    with pytest.raises(MediaError, match="no decodable codec"):
        load_media(DATA / "unknown_codec.webm")


@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_media_mutations(corpus, tmp_path, data):
    seeds = [c for c in corpus.values() if c.expect == "ok" and c.path.is_file()]
    seed = data.draw(st.sampled_from(seeds))
    blob = bytearray(seed.path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    blob = blob[: data.draw(st.integers(1, len(blob)))]
    ext = data.draw(st.sampled_from([seed.path.suffix, ".png", ".jpg", ".mp4", ".webm", ".gif", ".bin"]))
    f = tmp_path / f"case{ext}"
    f.write_bytes(bytes(blob))
    try:
        clip = load_media(f, num_frames=4, limits=MediaLimits(max_pixels=1 << 22, max_frames=10_000))
    except MediaError as e:
        assert str(f) in str(e)
        return
    assert clip.frames.dtype == np.uint8 and clip.frames.ndim == 4 and clip.num_frames >= 1
