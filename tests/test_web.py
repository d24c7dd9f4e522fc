"""The web app without a browser: pure pieces checked by hand, then both apps through FastAPI's TestClient
(routes, errors, path traversal, limits, the index cache, mask decoding once, autosave and resume,
concurrent saves, the written record validating)."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from densecaption.data.dci import DCIDataset  # noqa: E402
from densecaption.data.schema import Box  # noqa: E402
from densecaption.data.validate import validate_dataset  # noqa: E402
from densecaption.web.annotate import AnnotateConfig, create_annotate_app, skeleton_stem  # noqa: E402
from densecaption.web.common import file_under  # noqa: E402
from densecaption.web.index import RecordIndex  # noqa: E402
from densecaption.web.masks import display_size, outline  # noqa: E402
from densecaption.web.records import MaskText, annotation_order, context_crop, step_done, total_words  # noqa: E402
from densecaption.web.view import ViewConfig, create_view_app  # noqa: E402
from tests.conftest import make_doc, write_dataset  # noqa: E402
from tests.test_web_support import write_skeletons  # noqa: E402


# --------------------------------------------------------------------------------------------- pure pieces
def test_total_words_counts_as_dci_did():
    # "A red box On a floor" has no end mark, so a period is added: 6 pieces. The lid adds
    # " lid: the lid" + "." = 3 pieces -> 9. Low quality and label-less masks add nothing.
    masks = [MaskText("lid", "the lid", 0), MaskText("floor", "grey", 1), MaskText("", "no label", 0)]
    assert total_words("A red box", "On a floor", masks) == 9
    # a double space is an empty piece, as a split on single spaces gives: "a  b ." -> a, '', b, . = 4
    assert total_words("a  b", "", []) == 4


def test_annotation_order_is_descending_numeric():
    # ascending numeric 1, 2, 10 (not string order 1, 10, 2), reversed
    assert annotation_order(["1", "10", "2"]) == [10, 2, 1]


def test_context_crop_widens_and_cuts_to_the_parent():
    box = Box(100, 100, 200, 150)  # 100 x 50: widened by 0.6*100 = 60 left/right, 0.3*50 = 15 up/down
    assert context_crop(box, None, 400, 300) == Box(40, 85, 260, 165)
    assert context_crop(box, Box(50, 90, 250, 300), 400, 300) == Box(50, 90, 250, 165)
    assert context_crop(Box(0, 0, 400, 300), None, 400, 300) == Box(0, 0, 400, 300)  # cut to the photo


@pytest.mark.parametrize("mask, done", [
    (MaskText("a", "b", 0), True), (MaskText("a", "", 0), False), (MaskText("", "b", 0), False),
    (MaskText("a", "", 1), True), (MaskText("", "", 1), False), (MaskText("", "", 2), True)])
def test_step_done_follows_the_quality_table(mask, done):
    assert step_done(mask) is done


def test_outline_and_display_size():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:8, 2:8] = True  # a 6x6 square; a 1 px outline is its 20 edge pixels (36 - 4x4 inside)
    assert int(outline(mask, 1).sum()) == 20
    # the image border is an edge: a full 5x5 mask keeps its 3x3 middle, so 25 - 9 = 16 outline pixels
    assert int(outline(np.ones((5, 5), dtype=bool), 1).sum()) == 16
    assert display_size(2048, 1024, 1024) == (1024, 512)
    assert display_size(300, 200, 1024) == (300, 200)


def test_file_under_refuses_what_lies_outside(tmp_path):
    inside = tmp_path / "photos"
    inside.mkdir()
    (inside / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    (inside / "link.jpg").symlink_to(tmp_path / "secret.txt")
    assert file_under(inside, "a.jpg") == (inside / "a.jpg").resolve()
    for name in ("../secret.txt", str(tmp_path / "secret.txt"), "link.jpg", "", ".", "a.jpg\x00", "missing.jpg"):
        assert file_under(inside, name) is None, name


def test_skeleton_stem():
    assert skeleton_stem("sa_1-mask.json") == "sa_1"
    assert skeleton_stem("112956-data.json") == "112956"
    assert skeleton_stem("x.json") == "x"


# --------------------------------------------------------------------------------------------- view
@pytest.fixture(scope="module")
def view(tmp_path_factory):
    cache = tmp_path_factory.mktemp("view-cache")
    app = create_view_app(ViewConfig("sample", cache_dir=cache, page_size=5))
    return TestClient(app), app, cache


def test_index_lists_filters_searches_and_pages(view):
    client, app, _ = view
    page = client.get("/")
    assert page.status_code == 200
    assert "13 of 13 records" in page.text
    assert page.text.count('class="record-link"') == 5  # page_size 5: pages of 5, 5 and 3
    assert client.get("/?page=3").text.count('class="record-link"') == 3
    valid = client.get("/?split=valid").text
    assert valid.count('class="record-link"') == 1 and "/image/clock-data" in valid
    row = app.state.index.get("retina-data")
    assert (row.split, row.masks, row.summaries, row.negatives, row.clip_scores) == ("test", 12, True, True, True)
    found = client.get("/?q=optic disc").text  # every word must occur in the captions or labels
    assert "/image/retina-data" in found and "/image/clock-data" not in found
    assert client.get("/?q=" + "x" * 201).status_code == 422


def test_index_words_column_uses_the_counter():
    # make_doc: "A red box. A red box on a grey floor." = 10 pieces; mask 1 " box: a red box." = 4,
    # mask 2 " lid: the lid." = 3, mask 3 is low quality: 10 + 4 + 3 = 17
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inner = write_dataset(Path(tmp), {"1-data.json": make_doc()})
        index = RecordIndex.open(DCIDataset.open(inner), None)
        assert index.rows[0].words == 17 and index.rows[0].masks == 3


def test_index_cache_reopens_without_parsing(tmp_path):
    inner = write_dataset(tmp_path / "d", {"1-data.json": make_doc(), "2-data.json": make_doc()})
    dataset = DCIDataset.open(inner)
    first = RecordIndex.open(dataset, tmp_path / "cache")
    assert first.parsed == 2
    again = RecordIndex.open(dataset, tmp_path / "cache")
    assert again.parsed == 0 and [r.stem for r in again.rows] == ["1-data", "2-data"]
    assert [r.stem for r in again.filter(query="lid")] == ["1-data", "2-data"]
    doc = make_doc()
    doc["short_caption"] = "A purple elephant and more words."
    (inner / "complete" / "2-data.json").write_text(json.dumps(doc))
    changed = RecordIndex.open(dataset, tmp_path / "cache")
    assert changed.parsed == 1
    assert [r.stem for r in changed.filter(query="purple elephant")] == ["2-data"]


def test_record_page_shows_masks_description_and_sdci(view):
    client, _, _ = view
    page = client.get("/image/retina-data")
    assert page.status_code == 200
    text = page.text
    for idx in range(1, 13):
        assert 'class="tree-item q' in text and f'data-mask="{idx}"' in text
    assert 'id="prev" href="/image/hubble_deep_field-data"' in text
    assert 'id="next" href="/image/rocket-data"' in text
    assert "m-1-sc" in text and "Negatives: basic" in text and "clip_scores" in text
    assert "Content-Security-Policy" in page.headers and page.headers["X-Content-Type-Options"] == "nosniff"


def test_each_mask_is_decoded_once_even_under_concurrent_requests(view):
    client, app, _ = view
    before = app.state.masks.decoded
    urls = [f"/image/camera-data/mask/{i}/{k}.png" for i in range(1, 11) for k in ("fill", "outline")]
    results = {}

    def fetch(url):
        results[url] = client.get(url)

    threads = [threading.Thread(target=fetch, args=(u,)) for u in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results.values())
    assert app.state.masks.decoded - before == 10  # camera-data has 10 masks: one decode each
    with Image.open(io.BytesIO(results[urls[0]].content)) as im:  # mask 1 fill: white, alpha = the mask
        rgba = np.asarray(im.convert("RGBA"))
    assert rgba.shape == (512, 512, 4)
    record = app.state.index.dataset.read("camera-data.json")
    assert ((rgba[..., 3] == 255) == record.mask_pixels(1)).all() and (rgba[rgba[..., 3] == 255][:, :3] == 255).all()
    for url in urls[:4]:
        client.get(url)
    assert app.state.masks.decoded - before == 10


def test_view_refuses_unknown_names_and_traversal(view):
    client, _, _ = view
    for url in ("/image/nope", "/image/..%2Fsplits", "/photo/..%2F..%2Fsplits.json", "/photo/%2E%2E",
                "/image/retina-data/mask/99/fill.png", "/image/retina-data/mask/1/secret.png",
                "/static/..%2F..%2Fview.py", "/thumb/nope", "/image/" + "a" * 300):
        assert client.get(url).status_code in (404, 422), url
    assert client.get("/photo/retina-data").status_code == 200
    assert client.get("/thumb/retina-data").headers["content-type"] == "image/jpeg"


def test_a_photo_name_pointing_outside_is_not_served(tmp_path):
    doc = make_doc()
    inner = write_dataset(tmp_path / "d", {"1-data.json": doc})
    doc["image"] = "../splits.json"
    (inner / "complete" / "1-data.json").write_text(json.dumps(doc))
    client = TestClient(create_view_app(ViewConfig(str(inner))))
    assert client.get("/photo/1-data").status_code == 404
    assert client.get("/image/1-data").status_code == 200  # the page still shows, without a photo


def test_a_bad_record_shows_its_error_and_the_server_goes_on(tmp_path):
    inner = write_dataset(tmp_path / "d", {"1-data.json": make_doc(), "2-data.json": "{not json"})
    client = TestClient(create_view_app(ViewConfig(str(inner))))
    bad = client.get("/image/2-data")
    assert bad.status_code == 422 and "not valid JSON" in bad.text and 'id="record-error"' in bad.text
    assert client.get("/image/1-data").status_code == 200
    assert "not valid JSON" in client.get("/").text
    doc = make_doc()
    doc["mask_data"]["2"]["outer_mask"] = "bm90IGEgcG5n"  # base64 of "not a png": parses, fails to decode
    (inner / "complete" / "1-data.json").write_text(json.dumps(doc))
    client = TestClient(create_view_app(ViewConfig(str(inner))))
    assert client.get("/image/1-data/mask/1/fill.png").status_code == 422


def test_oversized_bodies_are_refused(view):
    client, _, _ = view
    assert client.post("/", content=b"x" * (600 * 1024)).status_code == 413


# --------------------------------------------------------------------------------------------- annotate
@pytest.fixture
def skeletons(tmp_path):
    return write_skeletons(tmp_path / "skeletons", ["horse", "clock"])


def _complete(client: TestClient, stem: str) -> dict:
    task = client.get(f"/api/task/{stem}").json()
    masks = {str(i): {"label": f"part {i}", "caption": f" part {i} as typed "} for i in task["order"]}
    first, second = task["order"][:2]
    masks[str(first)] = {"label": "dull", "caption": "typed before marking", "mask_quality": 1}
    masks[str(second)] = {"label": "", "caption": "", "mask_quality": 2}
    reply = client.put(f"/api/task/{stem}", json={"short_caption": "A horse.", "extra_caption": "A whole horse.",
                                                  "masks": masks, "step": len(task["order"]) + 1})
    assert reply.status_code == 200
    return task


def test_task_gives_order_crops_and_state(tmp_path, skeletons):
    client = TestClient(create_annotate_app(AnnotateConfig(skeletons, tmp_path / "out")))
    task = client.get("/api/task/horse").json()
    assert task["order"] == sorted((int(k) for k in task["masks"]), reverse=True)
    assert (task["width"], task["height"], task["photo_ok"]) == (400, 328, True)
    assert task["state"]["step"] == -1 and task["position"] == 2 and task["photos"] == 2  # clock, horse
    home = client.get("/")
    assert "0 of 2 finished" in home.text and "/task/horse" in home.text
    assert client.get("/task/horse").status_code == 200
    assert client.get("/task/horse/photo").status_code == 200
    assert client.get("/task/horse/mask/1/outline.png").status_code == 200


def test_autosave_resumes_after_a_restart(tmp_path, skeletons):
    config = AnnotateConfig(skeletons, tmp_path / "out")
    client = TestClient(create_annotate_app(config))
    saved = client.put("/api/task/horse", json={"step": 2, "short_caption": "A brown horse",
                                                "masks": {"3": {"label": "mane", "caption": "dark mane"}}})
    assert saved.status_code == 200
    assert saved.json()["progress"]["done"] == 1
    client.put("/api/task/horse", json={"masks": {"4": {"label": "tail", "caption": ""}}})
    restarted = TestClient(create_annotate_app(config))  # a new server over the same folders
    state = restarted.get("/api/task/horse").json()["state"]
    assert state["step"] == 2 and state["short_caption"] == "A brown horse"
    assert state["masks"]["3"] == {"label": "mane", "caption": "dark mane", "mask_quality": 0}
    assert state["masks"]["4"]["label"] == "tail"
    assert "in progress" in restarted.get("/").text


def test_saves_are_checked(tmp_path, skeletons):
    client = TestClient(create_annotate_app(AnnotateConfig(skeletons, tmp_path / "out")))
    assert client.put("/api/task/horse", json={"masks": {"99": {"label": "x"}}}).status_code == 422
    assert client.put("/api/task/horse", json={"masks": {"1": {"label": "x" * 301}}}).status_code == 422
    assert client.put("/api/task/horse", json={"masks": {"1": {"mask_quality": 3}}}).status_code == 422
    assert client.put("/api/task/horse", json={"step": -2}).status_code == 422
    assert client.put("/api/task/nope", json={}).status_code == 404
    assert client.get("/task/..%2F..%2Fetc").status_code == 404
    assert client.post("/api/task/horse/finish").status_code == 409  # nothing annotated yet


def test_concurrent_saves_of_one_photo_do_not_lose_fields(tmp_path, skeletons):
    config = AnnotateConfig(skeletons, tmp_path / "out")
    clients = [TestClient(create_annotate_app(config)) for _ in range(2)]  # two servers, one folder
    task = clients[0].get("/api/task/horse").json()

    def save(i, idx):
        for n in range(5):
            reply = clients[i % 2].put("/api/task/horse",
                                       json={"masks": {str(idx): {"label": f"l{idx}", "caption": f"c{n}"}}})
            assert reply.status_code == 200

    threads = [threading.Thread(target=save, args=(i, idx)) for i, idx in enumerate(task["order"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = clients[1].get("/api/task/horse").json()["state"]
    assert sorted(state["masks"]) == sorted(str(i) for i in task["order"])  # every mask's last save kept
    assert all(state["masks"][str(i)] == {"label": f"l{i}", "caption": "c4", "mask_quality": 0}
               for i in task["order"])


def test_finished_photo_is_an_official_record_that_validates(tmp_path, skeletons):
    out = tmp_path / "out"
    client = TestClient(create_annotate_app(AnnotateConfig(skeletons, out)))
    task = _complete(client, "horse")
    done = client.post("/api/task/horse/finish")
    assert done.status_code == 200 and done.json()["file"] == "annotations/horse-data.json"
    report = validate_dataset(out)
    assert report.ok(strict=True), [f.to_dict() for f in report.findings]
    dataset = DCIDataset.open(out)
    assert dataset.source == "annotations" and dataset.files() == ["horse-data.json"]
    record = dataset.read("horse-data.json")
    first, second = task["order"][:2]
    assert record.short_caption == "A horse." and record.extra_caption == "A whole horse."
    assert record.mask_keys == [str(i) for i in sorted(record.masks)]
    assert (record.masks[first].quality, record.masks[first].caption) == (1, "typed before marking")
    assert record.masks[second].quality == 2
    last = task["order"][-1]
    assert record.masks[last].caption == f" part {last} as typed "  # strings are not trimmed
    skeleton = json.loads((skeletons / "horse-mask.json").read_text())
    assert list(json.loads((out / "annotations" / "horse-data.json").read_text())["mask_data"]) == \
        list(skeleton["mask_data"])  # mask_data keeps the skeleton's order
    assert json.loads((out / "splits.json").read_text()) == {"train": ["horse-data.json"]}
    assert (out / "photos" / "horse.jpg").is_file()
    assert "1 of 2 finished" in client.get("/").text
    assert client.post("/api/task/horse/finish").status_code == 200  # again: same file, no repeat in splits
    assert json.loads((out / "splits.json").read_text()) == {"train": ["horse-data.json"]}


def test_a_broken_skeleton_shows_an_error(tmp_path, skeletons):
    (skeletons / "broken-mask.json").write_text('{"image": 3}')
    client = TestClient(create_annotate_app(AnnotateConfig(skeletons, tmp_path / "out")))
    page = client.get("/task/broken")
    assert page.status_code == 422 and 'id="record-error"' in page.text
    assert client.get("/api/task/broken").status_code == 422
    assert client.get("/").status_code == 200 and client.get("/api/task/horse").status_code == 200


def test_skeletons_in_a_dci_layout_with_a_run_log(tmp_path):
    # the mask pipeline writes OUT/annotations/<stem>-mask.json, OUT/photos/ and a run log OUT/*.json
    flat = write_skeletons(tmp_path / "flat", ["horse"])
    layout = tmp_path / "masks-out"
    (layout / "annotations").mkdir(parents=True)
    shutil.move(str(flat / "horse-mask.json"), layout / "annotations" / "horse-mask.json")
    shutil.move(str(flat / "photos"), layout / "photos")
    (layout / "annotations" / "masks-run.json").write_text("{}")
    client = TestClient(create_annotate_app(AnnotateConfig(layout, tmp_path / "out")))
    assert "masks-run" not in client.get("/").text
    assert client.get("/api/task/horse").json()["photo_ok"] is True


def test_other_sites_are_refused(tmp_path, skeletons):
    from densecaption.web.common import served_hosts

    config = AnnotateConfig(skeletons, tmp_path / "out", allowed_hosts=served_hosts("127.0.0.1"))
    client = TestClient(create_annotate_app(config), base_url="http://127.0.0.1:8000")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/", headers={"host": "evil.example:8000"}).status_code == 403  # DNS rebinding
    save = {"short_caption": "x"}
    assert client.put("/api/task/horse", json=save, headers={"origin": "http://evil.example"}).status_code == 403
    assert client.put("/api/task/horse", json=save, headers={"origin": "http://127.0.0.1:8000"}).status_code == 200
    assert client.put("/api/task/horse", json=save).status_code == 200  # no Origin: not a browser page's request


def test_cli_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from densecaption.cli import build_app

    result = CliRunner().invoke(build_app(), ["annotate", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such folder" in result.output
    result = CliRunner().invoke(build_app(), ["view", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no such folder" in result.output
