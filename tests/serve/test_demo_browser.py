"""End-to-end: `pixelwise demo` on loopback, driven in headless Chromium through Playwright.

Uses the system Chromium (`apt-get install chromium`; Playwright's own browser downloads are not used) and skips
cleanly where either is missing. Screenshots go to $PIXELWISE_TEST_ARTIFACTS (default: the test's tmp folder).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import CONFORMANCE_CKPT, EXAMPLES, REPO, free_port, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

# Chromium flags for a closed network: without the background-networking ones its connections are refused.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def _chromium() -> str | None:
    for candidate in (os.environ.get("PIXELWISE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("PIXELWISE_TEST_ARTIFACTS", tmp_path)) / "serve"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser_page():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    exe = _chromium()
    if exe is None:
        pytest.skip("no system Chromium (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="pixelwise-chromium-")
    with sync_api.sync_playwright() as p:
        try:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=exe, headless=True,
                                                       args=CHROMIUM_FLAGS, viewport={"width": 1300, "height": 1100})
        except Exception as e:  # noqa: BLE001 — a Chromium that cannot start here is an absent browser
            pytest.skip(f"Chromium at {exe} does not start: {e}")
        try:
            yield ctx.new_page()
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


def _demo(model: Path, tmp_path: Path):
    port = free_port()
    cmd = [sys.executable, "-m", "pixelwise", "demo", "--model", str(model), "--port", str(port), "--device", "cpu"]
    return port, running_server(cmd, port, ready_path="/", log_path=tmp_path / "demo.log")


def click_image_pixel(img, x: float, y: float) -> None:
    """Click pixel (x, y) of an <img>, whatever its object-fit scaling and centering (scrolled into view first)."""
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    nw, nh, fit = img.evaluate("e => [e.naturalWidth, e.naturalHeight, getComputedStyle(e).objectFit]")
    scale = min(box["width"] / nw, box["height"] / nh)
    if fit == "scale-down":
        scale = min(scale, 1.0)
    elif fit in ("fill", "none"):
        raise AssertionError(f"unexpected object-fit {fit}")
    img.click(position={"x": (box["width"] - nw * scale) / 2 + x * scale,
                        "y": (box["height"] - nh * scale) / 2 + y * scale})


def run_image_session(page, url: str, artifacts: Path, name: str) -> dict[str, str]:
    """Upload the PixelWorld image, segment by text, then by a clicked point; return both status lines."""
    page.goto(url)
    page.wait_for_selector("#img-seg-media", timeout=60_000)
    page.locator("#img-seg-media input[type=file]").set_input_files(str(EXAMPLES / "pixelworld_image.png"))
    canvas = page.locator("#img-seg-canvas img")
    canvas.wait_for(timeout=60_000)
    status = page.locator("#img-seg-status textarea")
    out: dict[str, str] = {}

    # 1. text prompt only
    page.locator("#img-seg-text textarea").fill("the red circle")
    page.locator("#img-seg-run").click()
    page.wait_for_function("s => document.querySelector(s).value.includes('object(s)')",
                           arg="#img-seg-status textarea", timeout=180_000)
    page.locator("#img-seg-output img").wait_for(timeout=30_000)
    out["text"] = status.input_value()

    # 2. a clicked point on the red circle (scene coordinates 34, 38 of 128 x 128)
    first_run = out["text"].split(":")[0]  # "run N": the next run's status must be a different one
    zoom = canvas.evaluate("e => e.naturalWidth") / 128  # the demo shows small frames upscaled
    click_image_pixel(canvas, 34.5 * zoom, 38.5 * zoom)
    page.wait_for_function("s => document.querySelector(s).value.includes('\"point\"')",
                           arg="#img-seg-prompts textarea", timeout=30_000)
    prompts = page.locator("#img-seg-prompts textarea").input_value()
    page.locator("#img-seg-text textarea").fill("segment this object")
    page.locator("#img-seg-run").click()
    page.wait_for_function("([s, old]) => { const v = document.querySelector(s).value; "
                           "return v.includes('object(s)') && !v.startsWith(old + ':'); }",
                           arg=["#img-seg-status textarea", first_run], timeout=180_000)
    output = page.locator("#img-seg-output img")
    output.wait_for(timeout=30_000)
    assert output.get_attribute("src"), "the result image has no source"
    out["point"] = status.input_value()
    out["prompts"] = prompts
    page.wait_for_timeout(1000)  # let Gradio's fade-in of the updated outputs finish before the screenshot
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)
    return out


def test_demo_segments_from_text_and_a_clicked_point(browser_page, tmp_path):
    pytest.importorskip("pixelwise.pipeline")
    port, server = _demo(CONFORMANCE_CKPT, tmp_path)
    artifacts = _artifacts(tmp_path)
    with server:
        out = run_image_session(browser_page, f"http://127.0.0.1:{port}/", artifacts, "demo_conformance_model")
    (point,) = json.loads(out["prompts"])
    assert point["type"] == "point" and abs(point["point"][0] - 34) <= 2 and abs(point["point"][1] - 38) <= 2
    assert "object(s)" in out["text"]
    # the clicked region comes back as an object with a mask even from the random model
    objects, pixels = _counts(out["point"])
    assert objects >= 1 and pixels > 0, out["point"]
    assert (artifacts / "demo_conformance_model.png").stat().st_size > 10_000


def _counts(status: str) -> tuple[int, int]:
    """'run 2: 1 object(s), 375 mask pixel(s) on ...' -> (1, 375)."""
    objects = int(status.split(" object(s)")[0].split(": ")[1])
    pixels = int(status.split(", ")[1].split(" mask pixel")[0])
    return objects, pixels


DEFAULT_MODEL = REPO / "pixelwise" / "checkpoints" / "unipixel-tiny"


@pytest.mark.skipif(not (DEFAULT_MODEL / "config.json").is_file(), reason="the default model has not been trained yet")
def test_demo_on_the_default_model_draws_masks(browser_page, tmp_path):
    port, server = _demo(DEFAULT_MODEL, tmp_path)
    artifacts = _artifacts(tmp_path)
    with server:
        out = run_image_session(browser_page, f"http://127.0.0.1:{port}/", artifacts, "demo_default_model")
    for key in ("text", "point"):
        objects, pixels = _counts(out[key])
        assert objects >= 1 and pixels > 0, out[key]


def test_a_prompted_example_keeps_its_prompts(browser_page, tmp_path):
    """Clicking the image-question example "What color is [0]?" loads its media *and* its point; the run answers
    about that region (it comes back as object [0])."""
    port, server = _demo(CONFORMANCE_CKPT, tmp_path)
    page = browser_page
    with server:
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_role("tab", name="Image region understanding").click()
        page.wait_for_selector("#img-ask-run", timeout=60_000)
        page.locator("#img-ask-run").scroll_into_view_if_needed()
        examples = page.locator("text=What color is [0]?")
        examples.first.click()
        page.locator("#img-ask-canvas img").wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # the media change handler runs after the example fills the inputs
        prompts = json.loads(page.locator("#img-ask-prompts textarea").input_value())
        assert [p["type"] for p in prompts] == ["point"] and prompts[0]["point"] == [34, 38]
        page.locator("#img-ask-run").click()
        page.wait_for_function("s => document.querySelector(s).value.includes('object(s)')",
                               arg="#img-ask-status textarea", timeout=180_000)
        assert page.locator('#img-ask-answer [data-object="0"]').count() >= 1
        page.screenshot(path=str(_artifacts(tmp_path) / "demo_prompted_example.png"), full_page=True)
        # a failed run says why in the status box: the question names [1], which no prompt gives
        page.locator("#img-ask-text textarea").fill("Is [0] left of [1]?")
        page.locator("#img-ask-run").click()
        page.wait_for_function("s => document.querySelector(s).value.startsWith('error:')",
                               arg="#img-ask-status textarea", timeout=60_000)
        assert "names [1], but no such region was given" in page.locator("#img-ask-status textarea").input_value()
    log = (tmp_path / "demo.log").read_text()
    assert "Traceback" not in log  # a user's mistake is one log line, not a traceback


def test_the_api_docs_page_renders_offline(browser_page, tmp_path):
    """`/docs` loads Swagger UI from the server itself (Chromium here has no network): the operations render."""
    from .conftest import api_server_cmd

    port = free_port()
    with running_server(api_server_cmd(port, EXAMPLES), port, log_path=tmp_path / "api.log"):
        page = browser_page
        page.goto(f"http://127.0.0.1:{port}/docs")
        page.locator(".opblock-summary-path", has_text="/v1/segment").first.wait_for(timeout=60_000)
        assert page.locator(".opblock").count() >= 4  # segment, ask, model, healthz
