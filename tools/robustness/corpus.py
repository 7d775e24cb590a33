"""A corpus of hostile inputs, generated from a seed: malformed media, mutated JSON, unsafe or broken checkpoints.

Each `Case` names one file (or folder), the input class it belongs to, and what pixelwise must do with it:
`"error"` (a typed `PixelwiseError`: exit code 2 on the CLI), `"ok"` (a valid edge case that must load), or
`"any"` (a random mutation that may or may not still be valid: either outcome is fine, a crash or hang is not).
`tools.robustness.run` feeds the cases to the CLI and to the library readers.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import random
import shutil
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_EXTS = (".png", ".jpg", ".webp", ".bmp", ".gif")
VIDEO_EXTS = (".mp4", ".webm", ".avi")


@dataclass
class Case:
    name: str
    group: str  # media | result-json | dataset-json | checkpoint | pickle-payload
    kind: str  # the input class, e.g. "truncated video", "RLE of the wrong size"
    path: Path
    expect: str  # error | ok | any
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the media a result JSON belongs to, a benchmark name


# ----------------------------------------------------------------------------------------------------- media


def _frames(num: int = 8, h: int = 48, w: int = 64) -> np.ndarray:
    f = np.full((num, h, w, 3), 90, np.uint8)
    for t in range(num):
        f[t, 10:26, 4 + 3 * t:20 + 3 * t] = (220, 30, 30)
    return f


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims `width` x `height` pixels (a decompression-bomb probe)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00")) + \
        _png_chunk(b"IEND", b"")


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _video_bytes(tmp: Path, ext: str, frames: np.ndarray, fps: float = 10.0) -> bytes:
    from pixelwise.core.media import save_video

    p = tmp / f"seed{ext}"
    save_video(p, frames, fps=fps)
    return p.read_bytes()


def _vfr_video(path: Path, frames: np.ndarray) -> None:
    """MP4 whose frame durations vary (variable frame rate)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for t, arr in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            pts += 20 if t % 2 else 90
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _rotated_video(path: Path, frames: np.ndarray) -> None:
    """MP4 carrying a 90-degree display-rotation tag (phones write these)."""
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.metadata["rotate"] = "90"
        for arr in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def mpegts_bytes(width: int, height: int, frames: int) -> bytes:
    """An H.264 MPEG-TS stream of flat frames (streams of different sizes can be concatenated)."""
    from fractions import Fraction

    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mpegts") as c:
        s = c.add_stream("libx264", rate=Fraction(8))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for k in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * k, np.uint8), "rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def media_cases(root: Path, rng: random.Random, n_random: int = 40) -> list[Case]:
    d = root / "media"
    d.mkdir(parents=True, exist_ok=True)
    tmp = root / "_seed"
    tmp.mkdir(exist_ok=True)
    frames = _frames()
    im = Image.fromarray(frames[0])
    seeds: dict[str, bytes] = {
        ".png": _encode(im, "PNG"), ".jpg": _encode(im, "JPEG", quality=90), ".webp": _encode(im, "WEBP"),
        ".bmp": _encode(im, "BMP"), ".gif": _encode(im, "GIF"),
    }
    for ext in VIDEO_EXTS:
        seeds[ext] = _video_bytes(tmp, ext, frames)
    cases: list[Case] = []

    def add(name: str, kind: str, data: bytes | None, expect: str) -> Path:
        p = d / name
        if data is not None:
            p.write_bytes(data)
        cases.append(Case(name, "media", kind, p, expect))
        return p

    # valid edge cases: must load
    add("one_pixel.png", "1x1 image", _encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"), "ok")
    arr16 = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)
    add("gray16.png", "16-bit PNG", _encode(Image.fromarray(arr16), "PNG"), "ok")
    add("palette.png", "palette PNG", _encode(im.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), "ok")
    pal_t = im.convert("P", palette=Image.Palette.ADAPTIVE)
    add("palette_transparent.png", "palette PNG", _encode(pal_t, "PNG", transparency=0), "ok")
    add("rgba.png", "RGBA PNG", _encode(im.convert("RGBA"), "PNG"), "ok")
    add("cmyk.jpg", "CMYK JPEG", _encode(im.convert("CMYK"), "JPEG"), "ok")
    add("gray.jpg", "grayscale JPEG", _encode(im.convert("L"), "JPEG"), "ok")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90
    add("exif_rotated.jpg", "EXIF-rotated JPEG", _encode(im, "JPEG", exif=exif.tobytes()), "ok")
    add("png_named.jpg", "wrong extension (readable)", seeds[".png"], "ok")
    add("jpeg_no_extension", "no extension (readable)", seeds[".jpg"], "ok")
    add("mp4_named.mkv", "wrong extension (readable)", seeds[".mp4"], "ok")
    _vfr_video(add("vfr.mp4", "variable-frame-rate video", None, "ok"), frames)
    _rotated_video(add("rotated.mp4", "rotated video", None, "ok"), frames)
    add("one_frame.mp4", "single-frame video", _video_bytes(tmp, ".mp4", frames[:1]), "ok")
    folder = d / "frame_folder"
    folder.mkdir(exist_ok=True)
    for t in range(3):
        (folder / f"{t}.png").write_bytes(_encode(Image.fromarray(frames[t]), "PNG"))
    cases.append(Case("frame_folder", "media", "frame folder", folder, "ok"))

    # must fail with a typed error
    add("empty.png", "empty file", b"", "error")
    add("empty.mp4", "empty file", b"", "error")
    add("text.mp4", "text named as video", b"this is not a video\n" * 20, "error")
    add("text.png", "text named as image", b"hello\n" * 20, "error")
    add("huge_header.png", "oversize header (bomb)", png_header_only(100_000, 100_000), "error")
    add("zero_size.png", "zero-size header", png_header_only(0, 0), "error")
    add("wide_header.png", "oversize header (bomb)", png_header_only(1 << 30, 1), "error")
    add("png_named.mp4", "image named as video", seeds[".png"][:40], "error")
    add("html.jpg", "wrong content", b"<html><body>not an image</body></html>", "error")
    add("zip.mp4", "wrong content", b"PK\x03\x04" + bytes(200), "error")
    add("mp4_header_only.mp4", "zero-frame video", seeds[".mp4"][:48], "error")
    (d / "empty_folder").mkdir(exist_ok=True)
    cases.append(Case("empty_folder", "media", "empty frame folder", d / "empty_folder", "error"))
    bad_folder = d / "bad_frames"
    bad_folder.mkdir(exist_ok=True)
    (bad_folder / "0.png").write_bytes(b"not a png")
    cases.append(Case("bad_frames", "media", "folder of corrupt frames", bad_folder, "error"))
    cases.append(Case("missing.mp4", "media", "missing file", d / "missing.mp4", "error"))
    for ext, data in seeds.items():
        for frac in (0.05, 0.3, 0.7):
            add(f"truncated{int(frac * 100)}{ext}", "truncated " + ("video" if ext in VIDEO_EXTS else "image"),
                data[: max(1, int(len(data) * frac))], "error" if frac <= 0.05 else "any")
    for k in range(6):
        ext = rng.choice(IMAGE_EXTS + VIDEO_EXTS)
        add(f"random{k}{ext}", "random bytes", rng.randbytes(rng.randint(1, 4000)), "error")

    # header and first frames small, later frames large (two MPEG-TS streams back to back): `info` reads the header
    # (a valid 16x16 video), decoding must refuse the first frame that differs, from its header
    grow = add("grows_mid_stream.ts", "frame size grows mid-stream",
               mpegts_bytes(16, 16, 3) + mpegts_bytes(1280, 720, 3), "error")
    cases[-1].extra["cli_expect"] = "ok"
    assert grow.is_file()
    fifo = d / "fifo.mp4"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    cases.append(Case("fifo.mp4", "media", "FIFO / device instead of a file", fifo, "error"))

    # random mutations of valid files: either outcome is fine, crashes and hangs are not
    for k in range(n_random):
        ext = rng.choice(list(seeds))
        b = bytearray(seeds[ext])
        for _ in range(rng.randint(1, 12)):
            j = rng.randrange(len(b))
            b[j:j + 4] = rng.randbytes(4)
        name_ext = ext if rng.random() < 0.7 else rng.choice(IMAGE_EXTS + VIDEO_EXTS + (".bin",))
        add(f"mutated{k}{name_ext}", "mutated bytes", bytes(b), "any")
    shutil.rmtree(tmp, ignore_errors=True)
    return cases


# ----------------------------------------------------------------------------------------------------- JSON


BAD_VALUES: list[Any] = [None, "x", -1, 10**18, 1.5, float("nan"), [], {}, True, [-3, -1], "-1"]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):
            out += _paths(v, prefix + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def mutate_json(obj: Any, rng: random.Random) -> tuple[Any, str]:
    """One structural mutation of a JSON document: (mutated copy, what was done)."""
    obj = copy.deepcopy(obj)
    paths = [p for p in _paths(obj) if p]
    if not paths:
        return rng.choice(BAD_VALUES), "replaced the document"
    rles = [p for p in paths if isinstance(_get(obj, p), dict) and {"size", "counts"} <= set(_get(obj, p))]
    op = rng.choice(["delete", "retype", "retype", "rle", "negative-frame", "wrong-shape"])
    if op == "rle" and rles:
        p = rng.choice(rles)
        h, w = (_get(obj, p)["size"] + [1, 1])[:2] if isinstance(_get(obj, p)["size"], list) else (5, 5)
        from pixelwise.core.masks import rle_encode

        small = h // 2 if isinstance(h, int) and 2 <= h <= 4096 else 3  # a wrong size, never a huge allocation
        bad = rng.choice([rle_encode(np.ones((small, 3), bool)),
                          {"size": [h, w], "counts": "0"}, {"size": [h, w], "counts": [1, 2, 3]},
                          {"size": [h, w], "counts": "~~~~"}, {"size": [-4, w], "counts": ""}])
        _get(obj, p[:-1])[p[-1]] = bad
        return obj, "RLE of the wrong size / counts"
    if op == "negative-frame":
        frames = [p for p in paths if isinstance(p[-1], str) and p[-1].isdigit()]
        ints = [p for p in paths if isinstance(_get(obj, p), int) and not isinstance(_get(obj, p), bool)]
        if frames:
            p = rng.choice(frames)
            parent = _get(obj, p[:-1])
            parent[str(-1 - rng.randrange(5))] = parent.pop(p[-1])
            return obj, "negative frame id"
        if ints:
            p = rng.choice(ints)
            _get(obj, p[:-1])[p[-1]] = -1 - rng.randrange(1000)
            return obj, "negative number"
    if op == "wrong-shape":
        lists = [p for p in paths if isinstance(_get(obj, p), list) and _get(obj, p)]
        if lists:
            p = rng.choice(lists)
            lst = _get(obj, p)
            if rng.random() < 0.5:
                lst.pop(rng.randrange(len(lst)))
            else:
                lst.append(copy.deepcopy(lst[0]))
            return obj, "list of the wrong length"
    p = rng.choice(paths)
    parent = _get(obj, p[:-1])
    if op == "delete" and isinstance(parent, dict):
        del parent[p[-1]]
        return obj, "missing key"
    parent[p[-1]] = rng.choice(BAD_VALUES)
    return obj, "wrong type / value"


def _dump(obj: Any) -> str:
    return json.dumps(obj, allow_nan=True)


def result_cases(root: Path, rng: random.Random, n: int = 30) -> list[Case]:
    """Mutations of a valid result JSON (as `segment` writes it), checked with `pixelwise overlay` on its media."""
    from pixelwise.core.results import Result, SegObject

    d = root / "result_json"
    d.mkdir(parents=True, exist_ok=True)
    frames = _frames(4)
    media = d / "clip"
    media.mkdir(exist_ok=True)
    for t in range(4):
        Image.fromarray(frames[t]).save(media / f"{t}.png")
    m = np.zeros((4, 48, 64), bool)
    m[:, 10:26, 8:30] = True
    good = Result("the square", [SegObject(0, m, (4, 10), "square", 0.9)], [0, 1, 2, 3], (48, 64)).to_json()
    (d / "valid.json").write_text(_dump(good))
    cases = [Case("valid.json", "result-json", "valid result", d / "valid.json", "ok", {"media": media})]
    for name, text in [("not_json.json", "{oops"), ("list.json", "[1, 2]"), ("empty.json", ""),
                       ("binary.json", "\x00\xff\xfe")]:
        (d / name).write_text(text, errors="surrogateescape") if name != "binary.json" else \
            (d / name).write_bytes(b"\x00\xff\xfe")
        cases.append(Case(name, "result-json", "not a result JSON", d / name, "error", {"media": media}))
    fixed = {  # hand-written hostile results: each must be refused
        "empty_frames.json": ("empty frame list", dict(good, frame_indices=[], objects=[])),
        "negative_frame.json": ("negative frame id", dict(good, frame_indices=[-1, 0, 1, 2])),
        "negative_size.json": ("negative size", dict(good, size=[-48, 64])),
        "huge_size.json": ("size over the pixel limit", dict(good, size=[1_000_000, 1_000_000])),
        "float_size.json": ("wrong type / value", dict(good, size=[48.5, 64])),
        "junk_span.json": ("wrong type / value", dict(good, objects=[dict(good["objects"][0], span="ab")])),
        "rle_wrong_size.json": ("RLE of the wrong size / counts", dict(good, objects=[dict(
            good["objects"][0], masks=[{"size": [5, 5], "counts": "05"}] * 4)])),
        "past_the_end.json": ("frame index past the end", dict(good, frame_indices=[0, 1, 2, 99])),
        # 30 full 8192x8192 masks in 1.5 KB: 2 GB if decoded eagerly; masks stay RLE and the media size is checked
        "huge_claim.json": ("small JSON claiming huge masks", dict(good, size=[8192, 8192], frame_indices=list(range(30)),
                                                               objects=[dict(good["objects"][0], masks=[
                                                                   {"size": [8192, 8192], "counts": [0, 8192 * 8192]}
                                                               ] * 30)])),
        "many_runs.json": ("uncompressed RLE with more runs than pixels", dict(good, objects=[dict(
            good["objects"][0], masks=[{"size": [48, 64], "counts": [1] * 200_000}] * 4)])),
    }
    for name, (what, obj) in fixed.items():
        (d / name).write_text(_dump(obj))
        cases.append(Case(name, "result-json", what, d / name, "error", {"media": media}))
    for name, what, text in [("deep.json", "JSON nested 100,000 deep", "[" * 100_000 + "]" * 100_000),
                             ("big_int.json", "5,000-digit integer", '{"answer": "x", "size": [' + "9" * 5000 + ", 4]}")]:
        (d / name).write_text(text)
        cases.append(Case(name, "result-json", what, d / name, "error", {"media": media}))
    for k in range(n):
        obj, what = mutate_json(good, rng)
        (d / f"mutated{k}.json").write_text(_dump(obj))
        cases.append(Case(f"mutated{k}.json", "result-json", what, d / f"mutated{k}.json", "any", {"media": media}))
    return cases


def _export(root: Path, fmt: str, video: bool) -> Path:
    from pixelwise.data.pixelworld.export import export
    from pixelwise.data.pixelworld.generate import GenConfig, generate

    native = root / f"native_{'video' if video else 'image'}"
    if not (native / "samples.jsonl").exists():
        cfg = GenConfig(split="val", num=6, seed=0, video=video, resolution=48, num_frames=4 if video else None)
        generate(native, cfg, workers=1)
    return export(native, fmt, root / f"seed_{fmt}")


DATASETS = {  # benchmark name -> (export format, video, JSON files to mutate, relative to the export)
    "refcoco:val": ("refcoco", False, ["refcoco/instances.json"]),
    "reasonseg": ("reasonseg", False, None),
    "muse": ("muse", False, None),
    "mevis": ("mevis", True, ["meta_expressions.json", "mask_dict.json"]),
    "videorefer": ("videorefer", True, None),
}


def _data_root(seed: Path, bench: str) -> Path:
    if bench == "reasonseg":
        return next(p for p in seed.iterdir() if p.is_dir())
    return seed


def _rle_wrong_size(md: dict) -> dict:
    key = next(iter(md))
    md[key][0] = {"size": [5, 5], "counts": "05"}
    return md


def _negative_frame_keys(questions: list) -> list:
    for q in questions:
        region = q["annotation"][0]
        key = next(iter(region))
        region[str(-1 - int(key))] = region.pop(key)
    return questions


FIXED_DATASET_EDITS = {  # benchmark -> [(file, input class, edit)]: each must be refused
    "mevis": [
        ("mask_dict.json", "RLE of the wrong size", _rle_wrong_size),
        ("meta_expressions.json", "missing key", lambda d: {"vids": d["videos"]}),
        ("meta_expressions.json", "negative size",
         lambda d: [v.update(height=-1) for v in d["videos"].values()] and d),
    ],
    "videorefer": [
        ("questions.json", "negative frame id", _negative_frame_keys),
        ("questions.json", "frame index past the end", lambda d: [q.update(frame_idx="999") for q in d] and d),
        ("questions.json", "wrong type / value", lambda d: [q.update(annotation="x") for q in d] and d),
    ],
    "muse": [("muse_val.json", "wrong type / value", lambda d: [r.update(answers=7) for r in d] and d)],
    "refcoco:val": [("refcoco/instances.json", "missing key", lambda d: {k: v for k, v in d.items() if k != "images"}),
                    ("refcoco/instances.json", "image named outside the dataset",
                     lambda d: [im.update(file_name="../../../../../../etc/hostname") for im in d["images"]] and d)],
}


def dataset_cases(root: Path, rng: random.Random, n_per: int = 8) -> list[Case]:
    """Benchmark folders (PixelWorld exports in the official layouts) with one JSON file mutated each."""
    d = root / "datasets"
    d.mkdir(parents=True, exist_ok=True)
    cases = []
    for bench, (fmt, video, files) in DATASETS.items():
        seed = _export(d, fmt, video)
        data = _data_root(seed, bench)
        jsons = [data / f for f in files] if files else sorted(data.rglob("*.json"))[:3]
        cases.append(Case(f"{fmt}/valid", "dataset-json", "valid dataset", data, "ok", {"benchmark": bench}))
        for k, (rel, what, edit) in enumerate(FIXED_DATASET_EDITS.get(bench, [])):
            copy_root = d / f"{fmt}_fixed{k}"
            shutil.rmtree(copy_root, ignore_errors=True)
            shutil.copytree(seed, copy_root)
            target = copy_root / rel
            target.write_text(_dump(edit(json.loads(target.read_text()))))
            cases.append(Case(f"{fmt}_fixed{k}/{rel}", "dataset-json", what, _data_root(copy_root, bench), "error",
                              {"benchmark": bench}))
        for k in range(n_per):
            target = rng.choice(jsons)
            rel = target.relative_to(seed)
            copy_root = d / f"{fmt}_{k}"
            shutil.rmtree(copy_root, ignore_errors=True)
            shutil.copytree(seed, copy_root)
            obj, what = mutate_json(json.loads(target.read_text()), rng)
            (copy_root / rel).write_text(_dump(obj))
            cases.append(Case(f"{fmt}_{k}/{rel}", "dataset-json", what, _data_root(copy_root, bench), "any",
                              {"benchmark": bench}))
    return cases


# ----------------------------------------------------------------------------------------------------- checkpoints


class _WriteFile:
    """A pickle payload: unpickling it calls `open(path, 'w').write(...)` through `exec`."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"weight": _WriteFile(str(marker))}, protocol=2)


def torch_payload(path: Path, marker: Path) -> None:
    """A torch.save zip whose pickle runs the payload on an unrestricted load."""
    import torch

    torch.save({"weight": torch.zeros(2), "evil": _WriteFile(str(marker))}, str(path))


def _safetensors_bytes(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def checkpoint_cases(root: Path) -> list[Case]:
    import torch
    from safetensors.torch import save

    d = root / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    marker = d / "PWNED"
    good = save({"a": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5, dtype=torch.bfloat16)})
    cases: list[Case] = []

    def add(name: str, kind: str, data: bytes, expect: str = "error", **extra) -> None:
        (d / name).write_bytes(data)
        cases.append(Case(name, "checkpoint", kind, d / name, expect, dict(extra)))

    add("valid.safetensors", "valid safetensors", good, "ok")
    add("truncated.safetensors", "truncated safetensors", good[:-7])
    add("header_only.safetensors", "truncated safetensors", good[:20])
    add("tiny.safetensors", "no header", b"\x01\x02")
    add("huge_header_len.safetensors", "absurd header length", struct.pack("<Q", 1 << 62) + b"{}")
    add("bad_json.safetensors", "header not JSON", struct.pack("<Q", 6) + b"{oops}")
    add("larger_than_declared.safetensors", "tensor larger than declared",
        _safetensors_bytes({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 64]}}, bytes(64)))
    add("shape_exceeds_file.safetensors", "tensor larger than the file",
        _safetensors_bytes({"a": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 1 << 42]}},
                           bytes(16)))
    add("overlap.safetensors", "overlapping tensors",
        _safetensors_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)))
    add("bad_dtype.safetensors", "unknown dtype",
        _safetensors_bytes({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)))
    add("negative_shape.safetensors", "negative shape",
        _safetensors_bytes({"a": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, bytes(16)))
    add("int_weights.safetensors", "integer / bool weights", save({"w": torch.ones(5, dtype=torch.int64),
                                                                   "m": torch.ones(2, dtype=torch.bool)}))
    add("nan_weights.safetensors", "NaN / inf weights", save({"w": torch.tensor([1.0, float("nan"), float("inf")])}))
    add("payload.bin", "pickle payload (.bin)", pickle_payload(marker), marker=str(marker))
    add("payload_no_suffix", "pickle payload (no suffix)", pickle_payload(marker), marker=str(marker))
    torch_payload(d / "payload.pt", marker)
    cases.append(Case("payload.pt", "checkpoint", "torch.save payload (.pt)", d / "payload.pt", "error",
                      {"marker": str(marker)}))
    cases.append(Case("payload.pt --allow-pickle", "checkpoint", "torch.save payload with --allow-pickle",
                      d / "payload.pt", "error", {"marker": str(marker), "allow_pickle": True}))
    import torch as _t

    _t.save({"w": _t.ones(3)}, str(d / "plain.pt"))
    cases.append(Case("plain.pt", "checkpoint", "plain state dict .pt without --allow-pickle", d / "plain.pt", "error"))
    cases.append(Case("plain.pt --allow-pickle", "checkpoint", "plain state dict .pt with --allow-pickle",
                      d / "plain.pt", "ok", {"allow_pickle": True}))
    cases += unipixel_config_cases(d)
    return cases


UNIPIXEL_CONFIG = {  # the shape of an official config.json, tiny sizes
    "model_type": "pixel_qwen2_5_vl", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "intermediate_size": 160, "vocab_size": 448, "rope_scaling": {"mrope_section": [2, 3, 3],
                                                                                              "type": "mrope"},
    "ref_token_id": 428, "seg_token_id": 429, "mem_token_id": 430, "video_token_id": 419, "image_token_id": 418,
    "vision_start_token_id": 415, "vision_end_token_id": 416, "bos_token_id": 406, "eos_token_id": 408,
    "sam2_config": None, "sam2_image_size": 128, "sam2_hidden_tokens": 2,
    "vision_config": {"depth": 2, "hidden_size": 32, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2,
                      "temporal_patch_size": 2, "out_hidden_size": 64, "intermediate_size": 48},
}

CONFIG_EDITS = [
    ("hidden_size", "64", "size of the wrong type"),
    ("hidden_size", -64, "negative size"),
    ("hidden_size", 1e30, "size out of range"),
    ("num_attention_heads", 0, "zero heads"),
    ("num_attention_heads", 5, "hidden size not divisible by heads"),
    ("vocab_size", True, "bool as size"),
    ("seg_token_id", 448, "token id outside the vocabulary"),
    ("ref_token_id", -1, "negative token id"),
    ("eos_token_id", [408, 99999], "token id outside the vocabulary"),
    ("vision_config", "none", "vision_config of the wrong type"),
    ("model_type", "something_else", "wrong model_type"),
]


def unipixel_config_cases(d: Path) -> list[Case]:
    cases = []
    for k, (key, value, kind) in enumerate(CONFIG_EDITS):
        cfg = copy.deepcopy(UNIPIXEL_CONFIG)
        cfg[key] = value
        folder = d / f"config_{k}"
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text(json.dumps(cfg))
        cases.append(Case(f"config_{k} ({key}={value!r})", "checkpoint", f"config: {kind}", folder, "error"))
    folder = d / "config_not_json"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text("{model_type:")
    cases.append(Case("config_not_json", "checkpoint", "config: not JSON", folder, "error"))
    return cases


def build_corpus(out: str | Path, seed: int = 0, scale: int = 1) -> list[Case]:
    """Write every case under `out` (a fresh folder). `scale` multiplies the number of random mutations."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    return (media_cases(out, rng, 40 * scale) + result_cases(out, rng, 30 * scale)
            + dataset_cases(out, rng, 8 * scale) + checkpoint_cases(out))
