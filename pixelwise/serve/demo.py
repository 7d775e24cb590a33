"""The web demo (`pixelwise demo`): four Gradio tabs over one loaded pipeline.

Tabs: image segmentation, video segmentation, image region understanding, video region understanding. Each tab
shows the chosen frame on a *prompt canvas*: a click adds a point (positive or negative), two clicks in box mode
give a box, and the brush panel turns a stroke into a mask prompt (or into its bounding box). Prompts live in an
editable JSON box in the API's format, so what the demo sends is exactly what `POST /v1/segment` accepts. Requests
go through the same checks and the same `run_task` as the HTTP API; the answer is shown with each object's span
colored like its mask (`core.viz.color_for`), images as overlays, videos as GIF plus MP4.

Element ids (`<tab>-media`, `-canvas`, `-text`, `-prompts`, `-run`, `-output`, `-answer`, `-status`) are stable: the
browser test drives the page through them.
"""

from __future__ import annotations

import atexit
import functools
import html
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

from pixelwise.core import masks as mask_ops
from pixelwise.core import viz
from pixelwise.core.clip import Clip
from pixelwise.core.errors import PixelwiseError
from pixelwise.core.export import overlay_result, result_colors
from pixelwise.core.io import parse_json
from pixelwise.core.media import ImageSource, open_media, uniform_indices
from pixelwise.core.prompts import prompt_from_json
from pixelwise.core.results import Result
from pixelwise.serve.limits import BadRequestError, ServeLimits
from pixelwise.serve.service import (
    AskRequest,
    Pipeline,
    SegmentRequest,
    check_request,
    inspect_media,
    parse_request,
    run_task,
)

# Result images of small frames (PixelWorld is 128 x 128) fill their panel with sharp pixels. The prompt canvas is
# not scaled by CSS (Gradio maps clicks assuming unscaled images): it is upscaled server-side, see `display_scale`.
CSS = (".pw-zoom img { object-fit: contain !important; image-rendering: pixelated; }\n"
       ".pw-answer { overflow-wrap: anywhere; }")
CANVAS_SIDE = 384
CACHE_CLIPS = 4  # decoded clips kept for the canvas (per demo, all sessions together)
CACHE_BYTES = 256 << 20  # and their frames' bytes in all (the newest clip is kept whatever its size)
log = logging.getLogger("pixelwise.demo")


def display_scale(height: int, width: int) -> int:
    """Integer zoom of the prompt canvas so a small frame is big enough to click on precisely."""
    return max(1, CANVAS_SIDE // max(height, width, 1))


def zoom(image: np.ndarray, k: int) -> np.ndarray:
    return image if k == 1 else np.repeat(np.repeat(image, k, axis=0), k, axis=1)

POINT_POS, POINT_NEG, BOX = "point (+)", "point (−)", "box: click two corners"


@dataclass(frozen=True)
class TabSpec:
    key: str  # element id prefix
    title: str
    video: bool
    task: str  # "segment" | "ask"
    text_label: str
    button: str


QUESTION_LABEL = "Question (name the prompts [0], [1], ... in their order)"

TABS = (
    TabSpec("img-seg", "Image segmentation", False, "segment", "What to segment", "Segment"),
    TabSpec("vid-seg", "Video segmentation", True, "segment", "What to segment and track", "Segment"),
    TabSpec("img-ask", "Image region understanding", False, "ask", QUESTION_LABEL, "Ask"),
    TabSpec("vid-ask", "Video region understanding", True, "ask", QUESTION_LABEL, "Ask"),
)


# ------------------------------------------------------------------------------------------------ examples


def _examples_for(spec: TabSpec, media: dict[str, Path] | None) -> list[list[str]]:
    """Preloaded inputs per tab: (media, text, prompts JSON). Coordinates are objects of the PixelWorld scenes
    (`media`: their image and clip, as `data.pixelworld.demo.example_media` gives them; None: no examples)."""
    if not media:
        return []
    if spec.key == "img-seg":
        return [[str(media["image"]), "the red circle", "[]"],
                [str(media["image"]), "the striped blue square", "[]"],
                [str(media["image"]), "segment this object", json.dumps([_point(34, 38)])]]
    if spec.key == "vid-seg":
        return [[str(media["clip"]), "the red circle that moves to the left", "[]"],
                [str(media["clip"]), "the blue square that moves down", "[]"],
                [str(media["clip"]), "segment this object", json.dumps([_point(104, 52)])]]
    if spec.key == "img-ask":
        return [[str(media["image"]), "What color is [0]?", json.dumps([_point(34, 38)])],
                [str(media["image"]), "What shape is [0]?", json.dumps([{"type": "box", "box": [70, 22, 106, 58],
                                                                               "frame": 0}])]]
    return [[str(media["clip"]), "Describe [0].", json.dumps([_point(104, 52)])],
            [str(media["clip"]), "What shape is [0]?", json.dumps([_point(92, 98)])]]


def _point(x: float, y: float, frame: int = 0, positive: bool = True) -> dict[str, Any]:
    return {"type": "point", "point": [x, y], "frame": frame, "positive": positive}


# ------------------------------------------------------------------------------------------------ drawing


def answer_html(result: Result, colors: list[tuple[int, int, int]] | None = None) -> str:
    """The answer as people read it (`[k]` where the model wrote `<|seg|>`), each object's span highlighted in its
    mask's colour (`colors`, one per object, as the overlay drew them); unmentioned objects as chips."""
    text, spans_by_object = result.display()
    colors = colors or [viz.color_for(o.id) for o in result.objects]
    spans = sorted((a, b, j) for j, (a, b) in spans_by_object.items())
    parts, pos = [], 0
    for start, end, j in spans:
        start, end = max(start, pos), min(end, len(text))
        if start >= end:
            continue
        parts.append(html.escape(text[pos:start]))
        parts.append(_chip(text[start:end], result.objects[j].id, colors[j]))
        pos = end
    parts.append(html.escape(text[pos:]))
    body = "".join(parts) or "<i>(empty answer)</i>"
    unmentioned = [j for j, o in enumerate(result.objects) if j not in spans_by_object]
    if unmentioned:
        body += "<br>objects: " + " ".join(_chip(f"[{result.objects[j].id}]", result.objects[j].id, colors[j])
                                          for j in unmentioned)
    return f'<div class="pw-answer">{body}</div>'


def _chip(text: str, oid: int, color: tuple[int, int, int] | None = None) -> str:
    r, g, b = color or viz.color_for(oid)
    ink = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"
    return (f'<span class="pw-obj" data-object="{oid}" style="background:{viz.color_hex(oid, (r, g, b))};'
            f'color:{ink};padding:0 3px;border-radius:3px">{html.escape(text)}</span>')


def draw_prompts(frame: np.ndarray, prompts: list[dict[str, Any]], t: int, pending: list[float] | None) -> np.ndarray:
    """The frame with the prompts drawn on it (those of frame `t`): green/red points, yellow boxes, tinted masks."""
    out = frame.copy()
    h, w = out.shape[:2]
    radius = max(3, round(min(h, w) / 60))
    thickness = max(1, round(min(h, w) / 200))
    for p in prompts:
        if int(p.get("frame", 0)) != t:
            continue
        try:
            if p["type"] == "mask":
                m = mask_ops.rle_decode(p["rle"], expected_size=(h, w))
                out[m] = (0.5 * out[m] + 0.5 * np.array((255, 220, 0))).astype(np.uint8)
            elif p["type"] == "box":
                x1, y1, x2, y2 = (round(v) for v in p["box"])
                cv2.rectangle(out, (x1, y1), (x2, y2), (255, 220, 0), thickness)
            elif p["type"] == "point":
                x, y = (round(v) for v in p["point"])
                color = (40, 200, 60) if p.get("positive", True) else (230, 40, 40)
                cv2.circle(out, (x, y), radius, color, -1)
                cv2.circle(out, (x, y), radius, (255, 255, 255), 1)
        except (KeyError, TypeError, ValueError, PixelwiseError):
            continue  # a half-typed prompt in the JSON box: draw the rest, the run will name the problem
    if pending is not None and int(pending[2]) == t:
        cv2.drawMarker(out, (int(pending[0]), int(pending[1])), (255, 220, 0), cv2.MARKER_CROSS, 2 * radius, thickness)
    return out


def prompts_that_fit(prompts: list[dict[str, Any]], clip: Clip) -> list[dict[str, Any]]:
    """The prompts (API JSON) that lie inside the clip's frames: what is kept when new media is loaded, so an
    example's own prompts survive its media being loaded, and prompts of another media's size do not."""
    kept = []
    for p in prompts:
        try:
            prompt_from_json(p).validate(*clip.size, clip.num_frames)
        except PixelwiseError:
            continue
        kept.append(p)
    return kept


def parse_prompts_text(text: str) -> list[dict[str, Any]]:
    if not text or not text.strip():
        return []
    data = parse_json(text, "prompts", BadRequestError)
    if not isinstance(data, list):
        raise BadRequestError("prompts: must be a JSON list")
    return data


# ------------------------------------------------------------------------------------------------ the app


class DemoApp:
    """State shared by all sessions: the pipeline (behind a lock), decoded clips (small LRU), output folder."""

    def __init__(self, pipe: Pipeline, limits: ServeLimits | None = None, max_num_frames: int = 32,
                 out_dir: str | Path | None = None):
        self.pipe = pipe
        self.limits = limits or ServeLimits(max_num_frames=max_num_frames)
        self.max_num_frames = min(max_num_frames, self.limits.max_num_frames)
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="pixelwise-demo-"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one model call at a time, whichever tab asks
        self._clips: OrderedDict[tuple[str, int], Clip] = OrderedDict()
        self._clips_lock = threading.Lock()
        self._runs = 0

    def clip(self, media: str, num_frames: int) -> Clip:
        """The sampled frames the model will see (the canvas shows exactly these).

        Uploads go through the API's inspection first (file, pixel, frame and decoded-byte limits from the
        header, before any frame is decoded); decoded clips are cached, at most CACHE_CLIPS of them and
        CACHE_BYTES in all."""
        key = (media, int(num_frames))
        with self._clips_lock:
            if key in self._clips:
                self._clips.move_to_end(key)
                return self._clips[key]
        num_frames = min(max(int(num_frames), 1), self.max_num_frames)
        inspect_media(Path(media), num_frames, "sampled", self.limits)
        src = open_media(media, self.limits.media_limits())
        clip = src.read() if isinstance(src, ImageSource) else src.read(uniform_indices(src.num_frames, num_frames))
        with self._clips_lock:
            self._clips[key] = clip
            while len(self._clips) > CACHE_CLIPS or (
                    len(self._clips) > 1 and sum(c.frames.nbytes for c in self._clips.values()) > CACHE_BYTES):
                self._clips.popitem(last=False)
        return clip

    # -- handlers (plain functions of plain values: testable without a browser)

    def show(self, media: str | None, num_frames: int, t: int, prompts_text: str, pending: list[float] | None):
        """Canvas image for frame t with the prompts on it."""
        if not media:
            return None
        clip = self.clip(media, num_frames)
        t = min(max(int(t), 0), clip.num_frames - 1)
        try:
            prompts = parse_prompts_text(prompts_text)
        except PixelwiseError:
            prompts = []
        k = display_scale(clip.height, clip.width)
        return zoom(draw_prompts(clip.frames[t], prompts, t, pending), k)

    def add_click(self, x: float, y: float, mode: str, t: int, prompts_text: str, pending: list[float] | None
                  ) -> tuple[str, list[float] | None]:
        """A click on the canvas: a point, or one corner of a box (the second corner completes it)."""
        prompts = parse_prompts_text(prompts_text)
        t = int(t)
        if mode == BOX:
            if pending is None or int(pending[2]) != t:
                return json.dumps(prompts), [float(x), float(y), t]
            x1, x2 = sorted((pending[0], float(x)))
            y1, y2 = sorted((pending[1], float(y)))
            prompts.append({"type": "box", "box": [x1, y1, x2 + 1, y2 + 1], "frame": t})
            return json.dumps(prompts), None
        prompts.append(_point(float(x), float(y), t, positive=(mode != POINT_NEG)))
        return json.dumps(prompts), None

    def add_brush(self, editor: dict[str, Any] | None, as_box: bool, media: str | None, num_frames: int, t: int,
                  prompts_text: str) -> str:
        """The brushed strokes on the current frame as a mask prompt (or as their bounding box)."""
        if not media:
            raise BadRequestError("load an image or a video first")
        clip = self.clip(media, num_frames)
        mask = _strokes_mask(editor, clip.size)
        if mask is None:
            raise BadRequestError("brush over the object first (the brush panel has no strokes)")
        prompts = parse_prompts_text(prompts_text)
        if as_box:
            prompts.append({"type": "box", "box": list(mask_ops.mask_to_box(mask)), "frame": int(t)})  # x2, y2 exclusive
        else:
            prompts.append({"type": "mask", "rle": mask_ops.rle_encode(mask), "frame": int(t)})
        return json.dumps(prompts)

    def run(self, spec: TabSpec, media: str | None, text: str, prompts_text: str, num_frames: int,
            propagate: str = "sampled") -> dict[str, Any]:
        """Run the model like the API does; return what the output components show."""
        if not media:
            raise BadRequestError("load an image or a video first (or pick an example)")
        fields: dict[str, Any] = {"text": text or "", "prompts": parse_prompts_text(prompts_text),
                                  "num_frames": int(num_frames), "path": str(media)}
        model = SegmentRequest if spec.task == "segment" else AskRequest
        fields["propagate"] = propagate if spec.video else "sampled"
        req = check_request(parse_request(model, fields), self.limits)
        with self._lock:
            result, timings = run_task(self.pipe, spec.task, Path(media), req, self.limits)
            self._runs += 1
            run_id = self._runs
        src = open_media(media, self.limits.media_limits())
        frames = src.read(result.frame_indices).frames if not isinstance(src, ImageSource) else src.read().frames
        colors = result_colors(frames, result)  # once: the overlays and the answer's spans share them
        overlays = overlay_result(frames, result, colors=colors)
        out: dict[str, Any] = {"result": result, "answer_html": answer_html(result, colors)}
        if len(overlays) == 1:
            out["image"] = overlays[0]
        else:
            run_dir = self.out_dir / f"run{run_id:05d}"
            out["image"] = str(viz.save_animation(run_dir / "overlay.gif", overlays, fps=src.fps or 4.0))
            out["video"] = str(viz.save_animation(run_dir / "overlay.mp4", overlays, fps=src.fps or 4.0))
        pixels = sum(int(o.masks.sum()) for o in result.objects)
        seconds = timings["model_s"]
        out["status"] = (f"run {run_id}: {len(result.objects)} object(s), {pixels} mask pixel(s) on "
                         f"{result.num_frames} frame(s); model {seconds:.2f} s")
        return out


def _strokes_mask(editor: dict[str, Any] | None, size: tuple[int, int]) -> np.ndarray | None:
    """Union of the painted pixels of all editor layers, at the frame's size (None when nothing is painted)."""
    if not editor:
        return None
    painted = None
    for layer in editor.get("layers") or []:
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[-1] != 4:
            continue
        m = arr[..., 3] > 0
        painted = m if painted is None else (painted | m if painted.shape == m.shape else painted)
    if painted is None or not painted.any():
        return None
    if painted.shape != size:
        painted = mask_ops.resize_mask(painted, *size)
    return painted if painted.any() else None


def build_demo(pipe: Pipeline, limits: ServeLimits | None = None, max_num_frames: int = 32,
               out_dir: str | Path | None = None, examples: dict[str, Path] | None = None):
    """The Gradio Blocks of the demo (not launched). `examples`: {"image": path, "clip": path} of the PixelWorld
    example scenes the tabs offer (the CLI passes `data.pixelworld.demo.example_media()`), or None."""
    app = DemoApp(pipe, limits, max_num_frames, out_dir)
    media = examples
    info = pipe.info()
    name = html.escape(str(info.get("name") or info.get("family") or "model"))

    with gr.Blocks(title="pixelwise demo") as blocks:
        gr.Markdown(f"## pixelwise — pixel-level vision-language demo\nModel: **{name}**. Click the frame to add a "
                    "point (or two corners for a box), or brush a mask in *Brush a prompt*; prompts are drawn on the "
                    "frame they belong to.")
        with gr.Tabs():
            for spec in offered_tabs(info):
                with gr.Tab(spec.title, id=spec.key):
                    _build_tab(app, spec, media, click_modes(info))
    blocks.pixelwise_app = app  # type: ignore[attr-defined]
    return blocks


def offered_tabs(info: dict[str, Any]) -> list[TabSpec]:
    """The tabs the loaded model can use: no video tabs for an image model, no region tabs without visual prompts."""
    prompts, video = info.get("visual_prompts", ["point", "box", "mask"]), info.get("video", True)
    return [t for t in TABS if (video or not t.video) and (prompts or t.task != "ask")]


def click_modes(info: dict[str, Any]) -> list[str]:
    """What a click on the canvas may add, for the loaded model (negative points only where the model reads them)."""
    prompts = info.get("visual_prompts", ["point", "box", "mask"])
    modes = []
    if "point" in prompts:
        modes += [POINT_POS] + ([POINT_NEG] if info.get("negative_points") else [])
    if "box" in prompts:
        modes.append(BOX)
    return modes


def _build_tab(app: DemoApp, spec: TabSpec, media: dict[str, Path], modes: list[str]) -> None:
    k = spec.key
    pending = gr.State(None)
    with gr.Row():
        with gr.Column():
            if spec.video:
                media_in = gr.Video(label="Video", sources=["upload"], height=240, elem_id=f"{k}-media")
                num_frames = gr.Slider(1, app.max_num_frames, value=min(16, app.max_num_frames), step=1,
                                       label="Frames to sample", elem_id=f"{k}-num-frames")
                frame = gr.Slider(0, 15, value=0, step=1, label="Frame to prompt on", elem_id=f"{k}-frame")
            else:
                media_in = gr.Image(label="Image", type="filepath", sources=["upload"], height=240, elem_id=f"{k}-media")
                num_frames = gr.Number(1, visible=False)
                frame = gr.Number(0, visible=False)
            canvas = gr.Image(label="Prompt canvas: click to add a point or a box corner", type="numpy",
                              interactive=False, format="png", elem_id=f"{k}-canvas")
            mode = gr.Radio(modes, value=modes[0] if modes else None, label="Click adds", visible=bool(modes),
                            elem_id=f"{k}-mode")
            with gr.Accordion("Brush a prompt (mask, or a box around the stroke)", open=False,
                              visible=bool(modes)):
                brush = gr.ImageEditor(label="Brush on the frame", type="numpy", sources=[], layers=False,
                                       transforms=[], brush=gr.Brush(colors=["#ffdc00"], default_size=8),
                                       elem_id=f"{k}-brush")
                with gr.Row():
                    add_mask = gr.Button("Add stroke as mask", elem_id=f"{k}-add-mask")
                    add_box = gr.Button("Add stroke as box", elem_id=f"{k}-add-box")
            text = gr.Textbox(label=spec.text_label, lines=1, elem_id=f"{k}-text")
            prompts = gr.Textbox(value="[]", label="Prompts (JSON, as in the HTTP API)", lines=2,
                                 elem_id=f"{k}-prompts")
            propagate = gr.Radio(["sampled", "all"], value="sampled", label="Masks on", visible=spec.video,
                                 elem_id=f"{k}-propagate")
            with gr.Row():
                clear = gr.Button("Clear prompts", elem_id=f"{k}-clear")
                run = gr.Button(spec.button, variant="primary", elem_id=f"{k}-run")
        with gr.Column():
            if spec.video:
                output = gr.Image(label="Result (GIF)", type="filepath", interactive=False, height=320,
                                  elem_id=f"{k}-output", elem_classes=["pw-zoom"])
                video_out = gr.File(label="Result (MP4)", interactive=False, elem_id=f"{k}-video")
            else:
                output = gr.Image(label="Result", type="numpy", format="png", interactive=False, height=320,
                                  elem_id=f"{k}-output", elem_classes=["pw-zoom"])
                video_out = None
            answer = gr.HTML(label="Answer", elem_id=f"{k}-answer")
            status = gr.Textbox(label="Status", interactive=False, elem_id=f"{k}-status")
            with gr.Accordion("Result JSON (COCO RLE masks)", open=False):
                result_json = gr.JSON(elem_id=f"{k}-json")
    examples = [e for e in _examples_for(spec, media) if modes or e[2] == "[]"]  # prompted ones need prompts
    if examples:
        gr.Examples(examples, inputs=[media_in, text, prompts], label="PixelWorld examples", examples_per_page=4)

    def _guard(fn):
        """Show a user's mistake as a message in the page; keep the signature (Gradio injects SelectData by it)."""
        @functools.wraps(fn)
        def wrapped(*args):
            try:
                return fn(*args)
            except PixelwiseError as e:
                log.info("demo %s: %s", spec.key, e)  # one line: a user's mistake is no server fault
                raise gr.Error(str(e), print_exception=False) from None
        return wrapped

    def on_media(path, n, ptext):
        if not path:
            return None, gr.update(), "[]", None, None
        clip = app.clip(path, n)
        frame_update = gr.update(maximum=max(clip.num_frames - 1, 1), value=0) if spec.video else 0
        try:
            kept = json.dumps(prompts_that_fit(parse_prompts_text(ptext), clip))
        except PixelwiseError:
            kept = "[]"
        canvas_img = zoom(draw_prompts(clip.frames[0], json.loads(kept), 0, None),
                          display_scale(clip.height, clip.width))
        return canvas_img, frame_update, kept, None, clip.frames[0]

    def on_frame(path, n, t, ptext, pend):
        if not path:
            return None, None
        img = app.show(path, n, t, ptext, pend)
        return img, app.clip(path, n).frames[min(int(t), app.clip(path, n).num_frames - 1)]

    def on_select(evt: gr.SelectData, m, t, ptext, pend, path, n):
        if not path or evt.index is None or m not in modes:
            return ptext, pend, gr.update()
        clip = app.clip(path, n)
        scale = display_scale(clip.height, clip.width)  # canvas pixels -> frame pixels
        x, y = min(evt.index[0] // scale, clip.width - 1), min(evt.index[1] // scale, clip.height - 1)
        ptext, pend = app.add_click(x, y, m, t, ptext, pend)
        return ptext, pend, app.show(path, n, t, ptext, pend)

    def on_run(path, txt, ptext, n, prop):
        try:
            out = app.run(spec, path, txt, ptext, n, prop)
        except PixelwiseError as e:  # the user's mistake: in the status box (and a toast), outputs unchanged
            log.info("demo %s: %s", spec.key, e)
            gr.Warning(str(e))
            keep = [gr.update()] * (2 if spec.video else 1)
            return (*keep, gr.update(), f"error: {e}", gr.update())
        res = out["result"].to_json()
        values = [out["image"]]
        if spec.video:
            values.append(out.get("video"))
        return (*values, out["answer_html"], out["status"], res)

    # media_in.change: also fires when an example fills it (its prompts are kept: they fit its media)
    # every handler that may decode media runs on the queue (bounded, like the model's runs)
    media_in.change(_guard(on_media), [media_in, num_frames, prompts], [canvas, frame, prompts, pending, brush])
    if spec.video:
        num_frames.release(_guard(on_media), [media_in, num_frames, prompts], [canvas, frame, prompts, pending, brush])
        frame.change(_guard(on_frame), [media_in, num_frames, frame, prompts, pending], [canvas, brush])
    prompts.change(_guard(app.show), [media_in, num_frames, frame, prompts, pending], canvas)
    canvas.select(_guard(on_select), [mode, frame, prompts, pending, media_in, num_frames],
                  [prompts, pending, canvas])
    add_mask.click(_guard(lambda e, p, n, t, pt: app.add_brush(e, False, p, n, t, pt)),
                   [brush, media_in, num_frames, frame, prompts], prompts)
    add_box.click(_guard(lambda e, p, n, t, pt: app.add_brush(e, True, p, n, t, pt)),
                  [brush, media_in, num_frames, frame, prompts], prompts)
    clear.click(lambda: ("[]", None), None, [prompts, pending], queue=False)
    outputs = [output] + ([video_out] if spec.video else []) + [answer, status, result_json]
    run.click(on_run, [media_in, text, prompts, num_frames, propagate], outputs,
              concurrency_limit=1, concurrency_id="model")


def launch(pipe: Pipeline, host: str = "127.0.0.1", port: int = 7860, max_num_frames: int = 32,
           limits: ServeLimits | None = None, share: bool = False, examples: dict[str, Path] | None = None) -> None:
    """Build and serve the demo until interrupted (blocking)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    limits = limits or ServeLimits(max_num_frames=max_num_frames)
    out_dir = Path(tempfile.mkdtemp(prefix="pixelwise-demo-"))
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)  # result GIFs/MP4s live as long as the demo
    blocks = build_demo(pipe, limits, max_num_frames, out_dir, examples)
    blocks.queue(max_size=limits.max_queue, default_concurrency_limit=1)
    allowed = [str(out_dir)] + sorted({str(Path(p).parent) for p in (examples or {}).values()})
    blocks.launch(server_name=host, server_port=port, share=share, show_error=True, allowed_paths=allowed,
                  max_file_size=limits.max_upload_bytes, footer_links=["api"], css=CSS)
