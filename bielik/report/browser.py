"""Headless Chromium on a report page: check that it renders (every image decoded) and take a screenshot.

Used by the report's tests and to make the screenshot in docs/. Chromium is not a Python dependency:
Debian's ``chromium`` package (``apt-get install -y chromium``) or any ``chromium``/``chromium-browser``/
``google-chrome`` on PATH (or ``$BIELIK_CHROMIUM``) is used. The page itself has no scripts: the check
copies it with one small script appended that, after the load event, writes each image's
``naturalWidth`` and the page height into the DOM, which ``--dump-dom`` then prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bielik.errors import BielikError

_PROBE = """<script>
window.addEventListener('load', function () {
  var out = {images: [], sections: [], height: document.documentElement.scrollHeight};
  document.querySelectorAll('img').forEach(function (im) {
    out.images.push({name: im.getAttribute('data-name') || im.alt, width: im.naturalWidth, height: im.naturalHeight,
                     complete: im.complete});
  });
  document.querySelectorAll('section[id]').forEach(function (s) { out.sections.push(s.id); });
  var pre = document.createElement('pre');
  pre.id = 'bielik-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""
_FLAGS = [
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--allow-file-access-from-files",
]


def find_chromium() -> str | None:
    """Path of a Chromium-like browser, or None."""
    env = os.environ.get("BIELIK_CHROMIUM")
    if env:
        return env
    for name in (
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> str:
    exe = find_chromium()
    if exe is None:
        raise BielikError("no Chromium found: apt-get install -y chromium (or set BIELIK_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="bielik-chromium-") as profile:
        proc = subprocess.run(
            [exe, *_FLAGS, f"--user-data-dir={profile}", *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if proc.returncode != 0:
        raise BielikError(f"chromium exited with status {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def probe(html_file: str | Path, timeout: float = 120, width: int = 1280) -> dict:
    """Load the page in headless Chromium; return {"images": [{name, width, height}], "sections": [ids], "height": px,
    "dom": the rendered DOM}."""
    html_file = Path(html_file)
    text = html_file.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise BielikError(f"{html_file}: no </body> tag: not a report page")
    with tempfile.TemporaryDirectory(prefix="bielik-probe-") as tmp:
        page = Path(tmp) / "probe.html"
        page.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
        dom = _run(
            [
                f"--window-size={width},900",
                "--virtual-time-budget=10000",
                "--dump-dom",
                page.as_uri(),
            ],
            timeout,
        )
    m = re.search(r'<pre id="bielik-probe">(.*?)</pre>', dom, re.DOTALL)
    if m is None:
        raise BielikError(f"{html_file}: the page did not finish loading in Chromium (no probe output in the DOM)")
    import html as _html

    result = json.loads(_html.unescape(m.group(1)))
    result["dom"] = dom
    return result


def screenshot(
    html_file: str | Path,
    png: str | Path,
    width: int = 1280,
    height: int | None = None,
    colors: int | None = None,
    timeout: float = 180,
) -> Path:
    """A PNG of the page at ``width`` CSS pixels; ``height`` defaults to the full page height (measured first).

    ``colors`` re-saves it as a palette PNG with that many colours (Pillow, median cut, no dithering): a
    full report page of ~24,000 px shrinks from ~2.9 MB to ~1 MB with 128 colours and stays sharp, as it is
    flat colours and anti-aliased text.
    """
    html_file, png = Path(html_file), Path(png)
    if height is None:
        height = int(probe(html_file, timeout, width)["height"]) + 20
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            "--virtual-time-budget=10000",
            html_file.resolve().as_uri(),
        ],
        timeout,
    )
    if not png.is_file():
        raise BielikError(f"chromium wrote no screenshot to {png}")
    if colors:
        from PIL import Image

        with Image.open(png) as im:
            pal = im.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        pal.save(png, optimize=True)
    return png
