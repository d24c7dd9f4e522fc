"""T2I-CompBench prompt files: line endings, categories, the official files, the helper lists."""

from __future__ import annotations

import pytest

from densecaption.errors import UserError
from densecaption.evaluation.compbench.prompts import (CATEGORIES, complex_key, complex_prompt_lists, parse_prompts,
                                                       prompt_file, read_object_list, read_prompts)
from tests.conftest import shared_data_or_skip


@pytest.mark.parametrize("raw", [b"a cat\r\nb dog\r\n\r\na cat", b"a cat\nb dog\n\na cat\n", b"a cat\rb dog\r\ra cat\r",
                                 b"\xef\xbb\xbfa cat\r\n  b dog  \r\n \r\na cat\r\n"])
def test_read_prompts_line_endings(tmp_path, raw):
    path = tmp_path / "p.txt"
    path.write_bytes(raw)
    assert read_prompts(path) == ["a cat", "b dog", "a cat"]  # order and duplicates kept, blanks dropped


def test_parse_prompts_empty():
    assert parse_prompts("") == [] and parse_prompts("\r\n\n") == []


def test_prompt_file_resolution(tmp_path):
    (tmp_path / "color_val.txt").write_text("a red cat\n")
    (tmp_path / "color.txt").write_text("a red cat\n")
    assert prompt_file(tmp_path, "color") == tmp_path / "color_val.txt"
    assert prompt_file(tmp_path, "color", split="all") == tmp_path / "color.txt"
    with pytest.raises(UserError, match="shape_val.txt"):
        prompt_file(tmp_path, "shape")
    with pytest.raises(UserError, match="unknown T2I-CompBench category"):
        prompt_file(tmp_path, "colour")
    with pytest.raises(UserError, match="no such folder"):
        prompt_file(tmp_path / "missing", "color")
    with pytest.raises(UserError, match="split"):
        prompt_file(tmp_path, "color", split="test")


def test_categories():
    assert list(CATEGORIES) == ["color", "shape", "texture", "spatial", "non_spatial", "complex", "numeracy",
                                "3d_spatial"]
    assert CATEGORIES.get("3d_spatial").scorers == () and CATEGORIES.get("complex").scorers == ("3-in-1",)


def test_official_val_files_have_300_prompts():
    folder = shared_data_or_skip("t2i-compbench")
    for name in CATEGORIES:
        prompts = read_prompts(prompt_file(folder, name))
        assert len(prompts) == 300, name
        assert all(p == p.strip() and "\r" not in p for p in prompts)
    spatial, action = complex_prompt_lists(folder)
    complex_keys = {complex_key(p) for p in read_prompts(prompt_file(folder, "complex"))}
    assert len(spatial & complex_keys) > 0 and len(action & complex_keys) > 0
    pairs = read_object_list(folder / "new_objects.txt")
    assert ("mouse", "mice") in pairs and len(pairs) == 101


def test_complex_lists_and_object_list(tmp_path):
    (tmp_path / "complex_val_spatial.txt").write_text("The cat is on top of the box.\r\n")
    (tmp_path / "complex_val_action.txt").write_text("A man walks a dog\r\n")
    (tmp_path / "complex_val_spatialaction.txt").write_text("A man walks a dog next to a tree.\r\n")
    spatial, action = complex_prompt_lists(tmp_path)
    assert spatial == {"the cat is on top of the box"} and action == {"a man walks a dog"}
    assert complex_key("The cat is on top of the box. Really.") == "the cat is on top of the box"
    (tmp_path / "new_objects.txt").write_text("cat - cats\nmouse - mice\n\nbad line\n")
    with pytest.raises(UserError, match="line 4"):
        read_object_list(tmp_path / "new_objects.txt")
    with pytest.raises(UserError, match="complex_val_spatial.txt"):
        complex_prompt_lists(tmp_path / "nothing")
