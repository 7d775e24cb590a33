import math

import numpy as np
import pytest

from pixelwise.core.errors import PromptError
from pixelwise.core.prompts import Box, MaskPrompt, Point, parse_box, parse_point


def test_parse_point_and_box():
    assert parse_point("10,20") == Point(10, 20, 0)
    assert parse_point(" 1.5, 2 @3") == Point(1.5, 2, 3)
    assert parse_box("1,2,30,40@7") == Box(1, 2, 30, 40, 7)


@pytest.mark.parametrize("text", ["10", "a,b", "1,2,3", "1,2@x", "1,2@-1", "nan,3"])
def test_parse_point_rejects(text):
    with pytest.raises(PromptError, match="point"):
        parse_point(text)


def test_validate_bounds_and_frames():
    Point(5, 5).validate(10, 10)
    with pytest.raises(PromptError, match="outside the 10x8 frame"):
        Point(12, 1).validate(8, 10)
    with pytest.raises(PromptError, match="frame 3"):
        Point(1, 1, frame=3).validate(10, 10, num_frames=3)
    with pytest.raises(PromptError, match="finite"):
        Point(math.nan, 1).validate(10, 10)
    with pytest.raises(PromptError, match="empty"):
        Box(5, 5, 5, 9).validate(10, 10)
    with pytest.raises(PromptError, match="outside"):
        Box(0, 0, 11, 5).validate(10, 10)
    m = np.zeros((10, 10), bool)
    with pytest.raises(PromptError, match="empty"):
        MaskPrompt(m).validate(10, 10)
    with pytest.raises(PromptError, match="does not match"):
        MaskPrompt(np.ones((4, 4), bool)).validate(10, 10)
