"""The HTML report rendered by a real browser: headless Chromium loads report.html (offline, from a file) and
every section is there and every inline image decodes (naturalWidth > 0).

Chromium comes from Debian's ``chromium`` package, which scripts/test.sh installs when it is missing; the test
skips with that instruction only when no Chromium can be found."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bielik.report import ReportConfig, report
from bielik.report.browser import find_chromium, probe, screenshot

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "report_run"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    if find_chromium() is None:
        pytest.skip("headless Chromium not found: apt-get install -y chromium (scripts/test.sh does it when it can)")
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(FIXTURE, run)
    res = report(ReportConfig(run_dir=str(run), formats=["html"]))
    return Path(res["output"]) / "report.html", res


def test_chromium_renders_every_section_and_image(rendered):
    html, res = rendered
    page = probe(html)
    assert page["sections"] == res["sections"]
    assert page["sections"][0] == "summary" and len(page["sections"]) == res["stages"] + 1
    assert len(page["images"]) == res["figures"] > 0
    broken = [im["name"] for im in page["images"] if not (im["complete"] and im["width"] > 0 and im["height"] > 0)]
    assert not broken, f"images that did not decode: {broken}"
    # tables made it into the rendered DOM with their numbers
    assert page["dom"].count("<table>") >= res["tables"]
    assert page["height"] > 2000


def test_chromium_screenshot(rendered, tmp_path):
    html, _ = rendered
    png = screenshot(html, tmp_path / "shot.png", width=1000, height=1400)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (1000, 1400)
        colours = im.convert("RGB").resize((50, 70)).getcolors(50 * 70)
    assert colours is not None and len(colours) > 20, "the screenshot is blank"
    small = screenshot(html, tmp_path / "small.png", width=1000, height=1400, colors=64)
    with Image.open(small) as im:
        assert im.mode == "P" and len(im.getcolors(256) or []) <= 64
    assert small.stat().st_size < png.stat().st_size
