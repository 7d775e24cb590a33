import json

import numpy as np
import pytest
from PIL import Image

from pixelwise.core.clip import Clip
from pixelwise.core.errors import FormatError, MediaError, PixelwiseError
from pixelwise.core.masks import load_mask_png
from pixelwise.core.results import Result, SegObject
from tests.conftest import make_frames


def sample_result(num_frames=3):
    frames = make_frames(num_frames)
    masks = (frames[..., 0] > 200)  # the red square
    return frames, Result(
        answer="The target is [0].",
        objects=[SegObject(0, masks, span=(14, 17), label="red square")],
        frame_indices=list(range(0, 2 * num_frames, 2)),
        size=masks.shape[1:],
    )


def test_json_roundtrip():
    _, r = sample_result()
    back = Result.from_json(json.loads(json.dumps(r.to_json())))
    assert back.answer == r.answer and back.frame_indices == r.frame_indices
    assert np.array_equal(back.objects[0].masks, r.objects[0].masks)
    assert back.objects[0].span == (14, 17) and back.objects[0].label == "red square"


def test_save_writes_json_masks_and_overlay(tmp_path):
    frames, r = sample_result()
    written = r.save(tmp_path / "out", Clip(frames))
    assert written["overlay"].suffix == ".gif"
    pngs = sorted((tmp_path / "out" / "masks").glob("*.png"))
    assert [p.name for p in pngs] == ["object0_frame00000.png", "object0_frame00002.png", "object0_frame00004.png"]
    assert np.array_equal(load_mask_png(pngs[1]), r.objects[0].masks[1])
    assert Result.load(written["json"]).num_frames == 3


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda d: d.pop("size"), "not a pixelwise result"),
        (lambda d: d["objects"][0]["masks"].pop(), "has 2 masks for 3 frames"),
        (lambda d: d["objects"][0]["masks"].__setitem__(0, {"size": [1, 1], "counts": "1"}), "does not match"),
    ],
)
def test_malformed_result_json(mutate, words):
    _, r = sample_result()
    d = r.to_json()
    mutate(d)
    with pytest.raises(PixelwiseError, match=words):
        Result.from_json(d)


def test_clip_validation():
    with pytest.raises(MediaError, match="uint8"):
        Clip(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(MediaError, match="no frames"):
        Clip(np.zeros((0, 4, 4, 3), np.uint8))
    c = Clip(make_frames(6)).select([1, 4])
    assert c.frame_indices == [1, 4] and c.num_frames == 2


def test_answers_read_with_object_names_where_the_model_wrote_tokens():
    m = np.zeros((1, 4, 4), bool)
    official = "[0] <|seg|> and [1] <|seg|>."  # the official multi-object form: the token goes, [k] stays
    r = Result(official, [SegObject(0, m, (4, 11)), SegObject(1, m, (20, 27))])
    text, spans = r.display()
    assert text == "[0] and [1]." and r.text == text
    assert [text[a:b] for a, b in spans.values()] == ["[0]", "[1]"]
    plain = Result("Sure, it is <|seg|>.", [SegObject(2, m, (12, 19))])
    assert plain.text == "Sure, it is [2]."
    assert plain.to_json()["answer"] == "Sure, it is <|seg|>." and plain.to_json()["text"] == plain.text
    phrase = Result("the red car [SEG] and a box <box>1,2,3,4</box>", [SegObject(0, m, (12, 17)),
                                                                      SegObject(1, m, (28, 46))])
    assert phrase.text == "the red car [0] and a box <box>1,2,3,4</box>"  # a box as text is not a token


def test_a_small_result_json_claiming_huge_masks_allocates_nothing(tmp_path):
    """30 full 8192x8192 frames in 1.5 KB: loading keeps the RLEs (validated, not decoded); drawing it on media of
    another size is refused before any frame is decoded."""
    import json
    import tracemalloc

    from pixelwise.cli import main
    from pixelwise.core.masks import rle_encode

    full = {"size": [8192, 8192], "counts": [0, 8192 * 8192]}
    data = {"answer": "x", "size": [8192, 8192], "frame_indices": list(range(30)),
            "objects": [{"id": 0, "masks": [full] * 30}]}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    tracemalloc.start()
    r = Result.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 << 20 and r.objects[0].masks.shape == (30, 8192, 8192)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "m.png")
    assert main(["overlay", str(tmp_path / "m.png"), str(path), "-o", str(tmp_path / "o.gif")]) == 2
    bad = dict(data, objects=[{"id": 0, "masks": [{"size": [4, 4], "counts": [1] * 40}]}], size=[4, 4],
               frame_indices=[0])
    (tmp_path / "b.json").write_text(json.dumps(bad))
    with pytest.raises(FormatError, match="40 runs for 16 pixels"):
        Result.load(tmp_path / "b.json")
    small = dict(data, size=[4, 4], frame_indices=[0],
                 objects=[{"id": 0, "masks": [rle_encode(np.eye(4, dtype=bool))]}])
    (tmp_path / "s.json").write_text(json.dumps(small))
    assert np.array_equal(Result.load(tmp_path / "s.json").objects[0].masks[0], np.eye(4, dtype=bool))
