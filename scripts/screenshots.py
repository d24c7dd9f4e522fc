"""Remake the web app screenshots in docs/images/ (explorer index, a record page, an annotation step).

    .venv/bin/python scripts/screenshots.py [--chromium /usr/bin/chromium] [--out docs/images]

Serves the bundled sample with ``densecaption view`` and a skeleton made from one sample record (texts
blanked) with ``densecaption annotate``, each on a free local port, and drives Chromium with Playwright.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def skeleton(folder: Path, stem: str) -> Path:
    """A skeleton of a sample record (its texts blanked, as the mask pipeline writes them), photo beside it."""
    from densecaption.data.dci import blank_texts
    from densecaption.data.sample import sample_root

    src = sample_root()
    doc = blank_texts(json.loads((src / "annotations" / f"{stem}-data.json").read_text(encoding="utf-8")))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}-mask.json").write_text(json.dumps(doc), encoding="utf-8")
    shutil.copyfile(src / "photos" / doc["image"], folder / doc["image"])
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    from densecaption.data.sample import sample_root
    from densecaption.web.annotate import AnnotateConfig, create_annotate_app
    from densecaption.web.common import serve_in_thread as serve
    from densecaption.web.view import ViewConfig, create_view_app

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 820})
        with serve(create_view_app(ViewConfig("sample", cache_dir=Path(tmp) / "cache"))) as url:
            page.goto(url + "/?page=1")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(args.out / "web-index.png"))
            page.goto(url + "/image/camera-data")
            page.wait_for_load_state("networkidle")
            page.locator('.tree-item[data-mask="3"]').hover()
            expect(page.locator("#fill-3")).to_have_css("opacity", "0.38")
            page.screenshot(path=str(args.out / "web-explorer.png"))
        skeletons = skeleton(Path(tmp) / "skeletons", "camera")
        texts = json.loads((sample_root() / "annotations" / "camera-data.json").read_text(encoding="utf-8"))
        with serve(create_annotate_app(AnnotateConfig(skeletons, Path(tmp) / "out"))) as url:
            page.goto(url + "/task/camera")
            page.fill("#short-caption", texts["short_caption"])
            page.click("#next")
            for idx in (10, 9, 8, 7, 6):  # leaves first; the sample's own texts
                m = texts["mask_data"][str(idx)]
                page.fill("#label", m["label"])
                if m["mask_quality"] == 0:
                    page.fill("#caption", m["caption"])
                else:
                    page.click("#low-quality")
                page.click("#next")
            expect(page.locator("#crop")).to_have_attribute("data-drawn", "1")  # mask 5, parent of 6
            page.fill("#label", texts["mask_data"]["5"]["label"])
            page.fill("#caption", texts["mask_data"]["5"]["caption"][:80])
            page.locator(".child-label").first.hover()
            page.wait_for_timeout(300)
            page.screenshot(path=str(args.out / "web-annotate.png"))
        browser.close()
    for name in ("web-index.png", "web-explorer.png", "web-annotate.png"):
        print(args.out / name)


if __name__ == "__main__":
    main()
