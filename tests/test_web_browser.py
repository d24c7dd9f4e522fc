"""The web app in a real browser (Playwright driving Debian's Chromium): open the index and a record, hover
a mask label and see its outline lit; annotate a skeleton through all three stages with a reload midway,
then check the saved record. Skips when Playwright or Chromium is missing, except in CI (``CI=true``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.test_web_support import serve, write_skeletons

CHROMIUM = os.environ.get("DENSECAPTION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def _need_browser() -> None:
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install playwright)"
    if problem is None and not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def browser():
    _need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def view_url(tmp_path_factory):
    from densecaption.web.view import ViewConfig, create_view_app

    app = create_view_app(ViewConfig("sample", cache_dir=tmp_path_factory.mktemp("cache")))
    with serve(app) as url:
        yield url


def test_explorer_index_record_and_hover(browser, view_url):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(view_url + "/")
    assert page.locator("a.record-link").count() == 13
    page.locator("a.record-link", has_text="camera-data").click()
    page.wait_for_url("**/image/camera-data")
    page.wait_for_selector("#outline-3", state="attached")
    assert page.locator(".layer.outline").count() == 10
    assert not page.locator("#outline-3").evaluate("e => e.classList.contains('hl')")
    with page.expect_response(lambda r: "/mask/3/outline.png" in r.url and r.status == 200, timeout=10000) as _:
        page.reload()
    page.locator('.tree-item[data-mask="3"]').hover()
    assert page.locator("#outline-3").evaluate("e => e.classList.contains('hl')")
    expect(page.locator("#fill-3")).to_have_css("opacity", "0.38")  # after its short fade
    assert page.locator('#description .mask-ref[data-mask="3"]').evaluate("e => e.classList.contains('hl')")
    assert page.locator("#tag").is_visible()
    assert not page.locator("#outline-4").evaluate("e => e.classList.contains('hl')")
    page.locator("#description").hover(position={"x": 2, "y": 2})
    assert not page.locator("#outline-3").evaluate("e => e.classList.contains('hl')")
    page.locator("#next").click()
    page.wait_for_url("**/image/chelsea-data")
    page.close()


def test_annotate_three_stages_with_a_reload_midway(browser, tmp_path):
    from playwright.sync_api import expect

    from densecaption.data.dci import DCIDataset
    from densecaption.data.validate import validate_dataset
    from densecaption.web.annotate import AnnotateConfig, create_annotate_app

    skeletons = write_skeletons(tmp_path / "skeletons", ["horse"])
    out = tmp_path / "out"
    with serve(create_annotate_app(AnnotateConfig(skeletons, out))) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url + "/")
        page.locator("a.task-link", has_text="horse").click()
        page.wait_for_selector("#short-caption")
        page.fill("#short-caption", "A brown horse on grass.")
        page.click("#next")
        order = json.loads((skeletons / "horse-mask.json").read_text())["mask_data"]
        order = sorted((int(k) for k in order), reverse=True)
        n = len(order)
        for step, idx in enumerate(order):
            page.wait_for_selector("#label")
            assert f"({step + 1}/{n})" in page.locator("#step-title").inner_text()
            expect(page.locator("#crop")).to_have_attribute("data-drawn", "1")  # the region drawn
            if step == 0:
                assert page.locator("#next").is_disabled()  # nothing written yet
                page.fill("#label", "hoof")
                page.click("#low-quality")  # label only, quality 1
                assert page.locator("#caption").is_disabled()
            elif step == 1:
                page.click("#mark-bad")
            else:
                page.fill("#label", f"part {idx}")
                page.fill("#caption", f"the part numbered {idx}")
            if step == 2:  # reload midway: the server has the step and the texts
                expect(page.locator("#saved")).to_have_text("all changes saved")
                page.reload()
                page.wait_for_selector("#label")
                assert f"({step + 1}/{n})" in page.locator("#step-title").inner_text()
                assert page.input_value("#label") == f"part {idx}"
            if order[step] != order[0] and page.locator(".child-label").count():
                page.locator(".child-label").first.hover()  # overlays the child in cyan
            page.click("#next")
        page.wait_for_selector("#extra-caption")
        page.fill("#extra-caption", "A brown horse stands on green grass under a pale sky.")
        page.click("#next")
        page.click("#finish")
        page.wait_for_selector("#done")
        page.close()
    report = validate_dataset(out)
    assert report.ok(strict=True), [f.to_dict() for f in report.findings]
    record = DCIDataset.open(out).read("horse-data.json")
    assert record.short_caption == "A brown horse on grass."
    assert record.extra_caption.startswith("A brown horse stands")
    assert (record.masks[order[0]].label, record.masks[order[0]].quality) == ("hoof", 1)
    assert record.masks[order[1]].quality == 2
    assert all(record.masks[i].caption == f"the part numbered {i}" for i in order[2:])


def test_a_missing_browser_skips_here_but_fails_in_ci(monkeypatch):
    import tests.test_web_browser as me

    monkeypatch.setattr(me, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        me._need_browser()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        me._need_browser()
