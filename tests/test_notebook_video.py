"""Notebook 4, exported to HTML as a reader would get it, plays its gameplay video in a real
headless browser (Chromium): the video is embedded, loads, and has a non-zero duration. Code
hosts strip ``<video>``, so the same cell also shows the game as a strip of frames (a PNG),
which must be committed with the video and render in the browser too."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbconvert import HTMLExporter

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_training_with_hogwild.ipynb"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Reports every <video>'s metadata (or its error), and every image's decoded size, into
# <pre id="probe"> once all videos have loaded.
PROBE = """<pre id="probe">pending</pre><script>
const videos = [...document.querySelectorAll("video")];
const seen = new Array(videos.length).fill(null);
function report() {
  if (!seen.every(x => x !== null)) return;
  const images = [...document.images].map(i => [i.naturalWidth, i.naturalHeight]);
  document.getElementById("probe").textContent = JSON.stringify({videos: seen, images});
}
videos.forEach((v, i) => {
  v.addEventListener("loadedmetadata", () => {
    seen[i] = {duration: v.duration, width: v.videoWidth}; report(); });
  v.addEventListener("error", () => { seen[i] = {error: v.error ? v.error.code : -1}; report(); });
  v.load();
});
if (!videos.length) window.addEventListener("load", report);
</script>"""


def _browser() -> str | None:
    return next((b for b in map(shutil.which, BROWSERS) if b), None)


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def _is_strip(width: int, height: int) -> bool:
    """Frames side by side (record_video's strip: 8 by default): far wider than tall."""
    return height > 0 and width >= 3 * height


def _video_cells() -> list[nbformat.NotebookNode]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code"
            and any("<video" in o.get("data", {}).get("text/html", "")
                    for o in c.get("outputs", []))]


def test_committed_notebook_embeds_a_video() -> None:
    cells = _video_cells()
    assert cells, "notebook 4 is committed without its gameplay video output"
    videos = [o["data"]["text/html"] for c in cells for o in c.outputs
              if "<video" in o.get("data", {}).get("text/html", "")]
    assert all("data:video/mp4;base64," in v for v in videos), "video must be embedded"
    assert NOTEBOOK.stat().st_size < 2_000_000, "notebook 4 too large to load quickly"


def test_committed_video_has_its_strip_fallback() -> None:
    for cell in _video_cells():
        pngs = [base64.b64decode(o["data"]["image/png"]) for o in cell.outputs
                if "image/png" in o.get("data", {})]
        sizes = [_png_size(png) for png in pngs]
        assert any(_is_strip(*size) for size in sizes), (
            f"the video's cell shows no strip of frames beside it (PNG sizes {sizes}): "
            "record_video(..., strip=png) and show_video(mp4, strip=png)")


def test_exported_html_plays_video_in_headless_browser(tmp_path: Path) -> None:
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's chromium)")
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(NOTEBOOK, as_version=4))
    assert "<video" in body, "the exported HTML has no <video> element"
    page = tmp_path / "04.html"
    page.write_text(body.replace("</body>", PROBE + "</body>"))
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    match = re.search(r'<pre id="probe">([^<]*)</pre>', out.stdout)
    assert match, f"browser printed no probe result (exit {out.returncode}): {out.stderr[-500:]}"
    assert match.group(1) != "pending", "the videos did not load within the browser's budget"
    results = json.loads(match.group(1))
    assert results["videos"], "the browser found no video in the page"
    for result in results["videos"]:
        assert "error" not in result, f"the browser could not play a video: {result}"
        assert result["duration"] > 0 and result["width"] > 0, result
    assert any(_is_strip(w, h) for w, h in results["images"]), (
        f"the browser rendered no strip of frames (image sizes {results['images']})")
