import numpy as np
import pytest

from pixelwise.core import media
from pixelwise.core.errors import MediaError, MediaTooLargeError
from pixelwise.core.media import open_media
from tests.conftest import make_frames
from tools.robustness.corpus import mpegts_bytes


def test_uniform_indices_matches_official_rule():
    # the official tools: np.arange(0, n, (n - 1) / (k - 1))[:k].round() -> [0, 1, 3, 4, 6, 7] for n=8, k=6
    assert media.uniform_indices(8, 6) == [0, 1, 3, 4, 6, 7]
    for n in range(2, 300, 7):
        for k in (2, 5, 16):
            idx = media.uniform_indices(n, k)
            assert idx[0] == 0 and len(idx) == min(n, k)
            if n > k:
                assert idx[-1] == n - 1
            assert idx == sorted(set(idx))
    assert media.uniform_indices(5, 16) == [0, 1, 2, 3, 4]


def test_other_sampling_rules():
    assert media.every_k_indices(10, 3) == [0, 3, 6, 9]
    assert media.fps_indices(30, 30.0, 10.0) == list(range(0, 30, 3))
    assert media.fps_indices(10, None, 5) == list(range(10))
    with pytest.raises(MediaError, match="one sampling rule"):
        media.sample_indices(10, num_frames=3, every=2)


def test_image_video_and_folder_agree(media_dir):
    frames = make_frames()
    img = media.load_media(media_dir / "image.png")
    assert img.is_image and img.size == (48, 64) and np.array_equal(img.frames[0], frames[0])

    vid = media.open_media(media_dir / "clip.mp4")
    assert (vid.num_frames, vid.size) == (12, (48, 64)) and vid.fps == pytest.approx(10)
    clip = media.load_media(media_dir / "clip.mp4", num_frames=4)
    assert clip.frame_indices == [0, 4, 7, 11] and clip.num_frames == 4
    # lossy codec: close to the source
    assert np.abs(clip.frames.astype(int) - frames[[0, 4, 7, 11]].astype(int)).mean() < 4

    folder = media.load_media(media_dir / "frames", every=5)
    assert folder.frame_indices == [0, 5, 10]
    assert np.array_equal(folder.frames, frames[[0, 5, 10]])  # numeric, not lexical, order


def test_video_streaming_stops_at_last_wanted_frame(media_dir):
    src = media.open_media(media_dir / "clip.mp4")
    seen = [i for i, _ in src.iter_frames([1, 3])]
    assert seen == [1, 3]


@pytest.mark.parametrize(
    "name, error, words",
    [
        ("corrupt.jpg", MediaError, "corrupt"),
        ("empty.mp4", MediaError, "empty"),
        ("text.mp4", MediaError, "not a readable video"),
        ("huge.png", MediaTooLargeError, "huge.png"),
        ("empty_folder", MediaError, "no image frames"),
        ("missing.png", MediaError, "no such file"),
    ],
)
def test_hostile_media_raise_clear_errors(media_dir, name, error, words):
    with pytest.raises(error, match=words) as info:
        media.load_media(media_dir / name)
    assert str(media_dir / name) in str(info.value)


def test_limits(media_dir):
    tight = media.MediaLimits(max_pixels=100)
    with pytest.raises(MediaTooLargeError, match="exceeds the limit"):
        media.load_media(media_dir / "image.png", limits=tight)
    with pytest.raises(MediaTooLargeError, match="frames exceed"):
        media.open_media(media_dir / "clip.mp4", limits=media.MediaLimits(max_frames=5))


def test_special_images(tmp_path):
    from PIL import Image

    g16 = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = media.load_image(tmp_path / "g16.png")
    assert out.shape == (20, 30, 3) and out.max() == 255 and out.dtype == np.uint8

    pal = Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30) % 4).convert("P")
    pal.save(tmp_path / "pal.png")
    assert media.load_image(tmp_path / "pal.png").shape == (20, 30, 3)

    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    rgb = media.load_image(tmp_path / "cmyk.jpg")
    assert rgb.shape == (6, 8, 3) and rgb[..., 0].mean() > 200  # red stays red


def test_save_video_odd_size_roundtrip(tmp_path):
    frames = make_frames(5, 33, 47)
    p = media.save_video(tmp_path / "odd.mp4", frames, fps=5)
    clip = media.load_media(p)
    assert clip.num_frames == 5 and clip.size == (34, 48)  # padded to even dims for yuv420p


@pytest.mark.parametrize("ext", [".webm", ".avi", ".mov"])
def test_other_containers_roundtrip(tmp_path, ext):
    frames = make_frames(6)
    p = media.save_video(tmp_path / f"clip{ext}", frames, fps=6)
    src = media.open_media(p)
    assert src.num_frames == 6 and src.size == (48, 64)
    clip = src.read([0, 5])
    assert np.abs(clip.frames.astype(int) - frames[[0, 5]].astype(int)).mean() < 8


def test_a_video_whose_frames_grow_mid_stream_is_refused_before_conversion(tmp_path, monkeypatch):
    """Header and first frames 16x16, later frames 640x480 (two MPEG-TS streams back to back): refused at the first
    frame that differs, from the decoder's frame header, before any RGB array of it exists."""
    import av

    path = tmp_path / "grow.ts"
    path.write_bytes(mpegts_bytes(16, 16, 3) + mpegts_bytes(640, 480, 3))
    src = open_media(path)
    assert src.size == (16, 16) and src.num_frames == 6
    converted = []
    real = av.VideoFrame.to_ndarray
    monkeypatch.setattr(av.VideoFrame, "to_ndarray", lambda self, **kw: converted.append(self.width) or real(self, **kw))
    with pytest.raises(MediaError, match="frame 3 is 640x480, but the video is 16x16"):
        src.read()
    assert converted == [16, 16, 16]
    with pytest.raises(MediaError, match="frame 3 is 640x480"):
        src.read([5])  # frames not asked for are checked too: the size can change before the wanted one


def test_fifos_and_devices_are_refused_before_opening(tmp_path):
    import os

    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a regular file or folder"):
        open_media(fifo)  # opening a FIFO for reading would block until a writer comes
    with pytest.raises(MediaError, match="not a regular file or folder"):
        open_media("/dev/zero")
