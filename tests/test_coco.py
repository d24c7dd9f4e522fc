"""The COCO reader (2017 layout, Karpathy split file) and ``caption --coco`` on a constructed mini-COCO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from benchmarks.fake_server import FakeChatServer
from densecaption.cli import build_app
from densecaption.data.coco import read_coco, read_karpathy
from densecaption.errors import DataError, UserError


@pytest.fixture
def mini_coco(tmp_path) -> Path:
    """val2017: images 139 and 285 (139 with two captions, 285 with one); train2017: image 9. Karpathy's file
    puts 9 and 139 in test (by their 2014 names) and 285 in val."""
    root = tmp_path / "coco"
    for folder, ids in (("val2017", (139, 285)), ("train2017", (9,))):
        (root / folder).mkdir(parents=True)
        for i in ids:
            Image.new("RGB", (16, 12), (i % 256, 0, 0)).save(root / folder / f"{i:012d}.jpg")
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps({
        "images": [{"id": 285, "file_name": "000000000285.jpg", "width": 16, "height": 12},
                   {"id": 139, "file_name": "000000000139.jpg", "width": 16, "height": 12}],
        "annotations": [{"id": 1, "image_id": 139, "caption": "A room with a TV. "},
                        {"id": 2, "image_id": 285, "caption": "A big bear."},
                        {"id": 3, "image_id": 139, "caption": "A living room."}]}))
    (root / "dataset_coco.json").write_text(json.dumps({"images": [
        {"cocoid": 139, "filepath": "val2014", "filename": "COCO_val2014_000000000139.jpg", "split": "test",
         "sentences": [{"raw": "A room with a TV."}]},
        {"cocoid": 9, "filepath": "val2014", "filename": "COCO_val2014_000000000009.jpg", "split": "test",
         "sentences": [{"raw": "Food in bowls."}]},
        {"cocoid": 285, "filepath": "val2014", "filename": "COCO_val2014_000000000285.jpg", "split": "val",
         "sentences": []}]}))
    return root


def test_read_coco_groups_captions_by_image_in_id_order(mini_coco):
    images = read_coco(mini_coco, "val2017")
    assert [(im.id, im.file, im.captions) for im in images] == [
        (139, "val2017/000000000139.jpg", ("A room with a TV.", "A living room.")),
        (285, "val2017/000000000285.jpg", ("A big bear.",))]


def test_karpathy_split_finds_2014_names_in_the_2017_folders(mini_coco):
    images = read_karpathy(mini_coco, mini_coco / "dataset_coco.json", "test")
    assert [(im.id, im.file, im.captions) for im in images] == [
        (9, "train2017/000000000009.jpg", ("Food in bowls.",)),
        (139, "val2017/000000000139.jpg", ("A room with a TV.",))]
    with pytest.raises(UserError, match="a Karpathy split is one of"):
        read_karpathy(mini_coco, mini_coco / "dataset_coco.json", "val2017")


def test_missing_images_and_files_are_named(mini_coco):
    (mini_coco / "val2017" / "000000000285.jpg").unlink()
    with pytest.raises(DataError, match=r"1 image\(s\) listed in captions_val2017.json are missing "
                                        r"\(e.g. val2017/000000000285.jpg\)"):
        read_coco(mini_coco, "val2017")
    with pytest.raises(UserError, match="captions_train2017.json: no such file"):
        read_coco(mini_coco, "train2017")


def test_caption_coco_images(mini_coco, tmp_path):
    with FakeChatServer(lambda body: "a synthetic caption") as server:
        args = ["caption", "--coco", str(mini_coco), "--vlm", f"openai:{server.url}#fake", "--concurrency", "1"]
        result = CliRunner().invoke(build_app(), [*args, "--split", "val2017", "--out", str(tmp_path / "c.jsonl")])
        assert result.exit_code == 0, result.output
        karpathy = CliRunner().invoke(build_app(), [*args, "--karpathy", str(mini_coco / "dataset_coco.json"),
                                                    "--split", "test", "--out", str(tmp_path / "k.jsonl")])
        assert karpathy.exit_code == 0, karpathy.output
    lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [(x["file"], x["coco_id"], x["caption"]) for x in lines] == [
        ("val2017/000000000139.jpg", 139, "a synthetic caption"), ("val2017/000000000285.jpg", 285, "a synthetic caption")]
    assert [json.loads(line)["coco_id"] for line in (tmp_path / "k.jsonl").read_text().splitlines()] == [9, 139]


def test_caption_needs_exactly_one_source(mini_coco, tmp_path):
    result = CliRunner().invoke(build_app(), ["caption", "--coco", str(mini_coco), "--images", str(mini_coco),
                                              "--vlm", "openai:http://127.0.0.1:9#x", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "exactly one of --images DIR and --coco DIR" in result.output
