"""Mini-sets of ARO, SugarCrepe, VL-CheckList and Winoground in each official file format, on tiny solid-colour
photos, and ``ColourModel``, a test double whose scores can be worked out by hand:

- an image's feature is the one-hot of its dominant colour (red, green, blue; a grey photo is all zeros);
- a text's feature counts each colour word, plus 1 when the text's first word is that colour;
- the score is their dot product: e.g. a red crop gives "the red box" 1, "red box" 2, "blue box" 0.

The tests work their expected numbers out from these rules; ``scripts/demo.sh`` builds the sets with
``python -m benchmarks.compositional_minisets OUT`` and runs each benchmark on them.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from densecaption.models.base import ImageTextModel

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "grey": (128, 128, 128)}
NAMES = ("red", "green", "blue")


class ColourModel(ImageTextModel):
    """Scores a text by the colour words it shares with the image's dominant colour (see the module doc)."""

    spec = "test:colour"
    weights = "random"

    def encode_images(self, images) -> torch.Tensor:
        rows = []
        for im in images:
            r, g, b = np.asarray(im.convert("RGB"), dtype=np.float64).reshape(-1, 3).mean(axis=0)
            row = [0.0, 0.0, 0.0]
            if max(r, g, b) - min(r, g, b) > 40:
                row[(r, g, b).index(max(r, g, b))] = 1.0
            rows.append(row)
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 3)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            words = text.lower().split()
            rows.append([words.count(c) + (1.0 if words[:1] == [c] else 0.0) for c in NAMES])
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 3)

    def similarity(self, image_features, text_features):
        return image_features @ text_features.T


def photo(path: Path, *colours: str, size: int = 16) -> Path:
    """A JPEG of vertical bands ``size`` px wide, one per colour, ``size`` px high."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (size * len(colours), size))
    for k, c in enumerate(colours):
        im.paste(COLOURS[c], (k * size, 0, (k + 1) * size, size))
    im.save(path, quality=95)
    return path


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


# --------------------------------------------------------------------------------------------- ARO
def _vg(image: str, x: int, relation: str, false: str, true: str, **more) -> dict:
    return {"image_path": image, "bbox_x": x, "bbox_y": 0, "bbox_w": 16, "bbox_h": 16, "relation_name": relation,
            "false_caption": false, "true_caption": true, **more}


ORDER_CAPTIONS = ("red", "a red", "blue")
"""The Order sets' captions, one photo (red) each; tests/test_aro.py works out their options."""


def aro_mini(root: Path) -> str:
    """ARO folder with all four sets (COCO and Flickr files in it too). ``two.jpg`` is red (x 0-15) then blue
    (x 16-31), ``grey.jpg`` grey; ``gone.jpg`` does not exist.

    VG-Relation: "on" 1 of 2 right (a red crop: true red; a blue crop: a tie, wrong), "holding" 0 of 1,
    "beside" (symmetric: excluded) 1 of 1, one "on" item without a photo: 25.0 over 3 items.
    VG-Attribution: pair "red_blue" 20 right of 25, pair "big_small" (2 items, dropped): 80.0 over 25 items.
    """
    photo(root / "images" / "two.jpg", "red", "blue")
    photo(root / "images" / "grey.jpg", "grey")
    relation = [_vg("two.jpg", 0, "on", "the blue box", "the red box"),
                _vg("two.jpg", 16, "on", "the red box", "the green box"),
                _vg("two.jpg", 0, "holding", "red cup", "blue cup"),
                _vg("two.jpg", 0, "beside", "blue cup", "red cup"),
                _vg("gone.jpg", 0, "on", "blue cup", "red cup")]
    attribution = ([_vg("two.jpg", 0, "x", "the blue thing", "the red thing", attributes=["red", "blue"])] * 20
                   + [_vg("grey.jpg", 0, "x", "the blue thing", "the red thing", attributes=["red", "blue"])] * 5
                   + [_vg("two.jpg", 16, "x", "a red one", "a blue one", attributes=["big", "small"])] * 2)
    _write(root / "visual_genome_relation.json", relation)
    _write(root / "visual_genome_attribution.json", attribution)
    photo(root / "val2014" / "COCO_val2014_000000000001.jpg", "red")
    _write(root / "coco_karpathy_test.json", [{"image": "val2014/COCO_val2014_000000000001.jpg",
                                               "caption": list(ORDER_CAPTIONS)},
                                              {"image": "val2014/COCO_val2014_000000000404.jpg",
                                               "caption": ["a missing photo"]}])
    photo(root / "flickr30k-images" / "1.jpg", "red")
    _write(root / "flickr30k_test.json", [{"image": "flickr30k-images/1.jpg", "caption": list(ORDER_CAPTIONS)}])
    return str(root)


# --------------------------------------------------------------------------------------------- SugarCrepe
SUGARCREPE_TASKS = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")


def sugarcrepe_mini(root: Path) -> str:
    """Seven files; photos in ``root/val2017``: 1 red, 2 blue, 3 grey, 4 missing. Per task the first entry is
    right (red photo, caption red), add_obj's second is a tie (grey photo: wrong), replace_obj's second is
    wrong (blue photo, negative blue), swap_att's second has no photo. So add_obj 50, replace_obj 50, the
    other five 100; mean (50 + 50 + 5 * 100) / 7 = 85.714..."""
    photo(root / "val2017" / "000000000001.jpg", "red")
    photo(root / "val2017" / "000000000002.jpg", "blue")
    photo(root / "val2017" / "000000000003.jpg", "grey")
    right = {"filename": "000000000001.jpg", "caption": "a red bus", "negative_caption": "a green bus"}
    extra = {"add_obj": {"filename": "000000000003.jpg", "caption": "a red bus", "negative_caption": "a blue bus"},
             "replace_obj": {"filename": "000000000002.jpg", "caption": "a red bus", "negative_caption": "a blue bus"},
             "swap_att": {"filename": "000000000004.jpg", "caption": "a red bus", "negative_caption": "a blue bus"}}
    for task in SUGARCREPE_TASKS:
        entries = {"0": right} | ({"1": extra[task]} if task in extra else {})
        _write(root / f"{task}.json", entries)
    return str(root)


# --------------------------------------------------------------------------------------------- VL-CheckList
VLC_CATEGORIES = ("Object/Size/large", "Object/Size/medium", "Object/Size/small", "Object/Location/center",
                  "Object/Location/mid", "Object/Location/margin", "Attribute/color", "Attribute/material",
                  "Attribute/size", "Attribute/state", "Attribute/action", "Relation/action", "Relation/spatial")


def _vlc_file(root: Path, category: str, dataset: str, img_root: str, entries: list) -> None:
    anno = f"data/{category.lower()}/{dataset}.json"
    (root / "corpus" / "v1" / category).mkdir(parents=True, exist_ok=True)
    (root / "corpus" / "v1" / category / f"{dataset}.yaml").write_text(
        f"ANNO_PATH: {anno}\nIMG_ROOT: {img_root}/\nTYPE: TUPLE_JSON\n")
    _write(root / anno, entries)


def vlc_mini(root: Path) -> str:
    """VLC_ROOT that is also IMAGES_ROOT: ``vg/VG_100K/1.jpg`` red, ``vg/VG_100K/2.jpg`` grey,
    ``swig/3.jpg`` blue, ``hake/4.jpg`` missing. Every category has one vg file with one right entry (red
    photo, POS red, NEG green), except:

    - Object/Size/large: vg_obj [right, tie (grey: wrong)] = 0.5, vg_subj [right] = 1.0 (dataset vg: 0.75),
      swig_agent [blue photo, POS red, NEG blue: wrong] = 0.0, hake [missing photo only]: no entries, left
      out; category = (0.75 + 0.0) / 2 = 0.375;
    - Attribute/color: vg [right, wrong, right] = 2/3 rounded 0.6667, vaw [right] = 1.0: (0.6667 + 1) / 2.

    Object = (0.375 + 5 * 1) / 6 = 0.895833..., Attribute = (0.83335 + 4) / 5 = 0.96667, Relation = 1.0."""
    photo(root / "vg" / "VG_100K" / "1.jpg", "red")
    photo(root / "vg" / "VG_100K" / "2.jpg", "grey")
    photo(root / "swig" / "3.jpg", "blue")
    right = ["VG_100K/1.jpg", {"POS": ["a red car", "ignored"], "NEG": ["a green car", "ignored"]}]
    tie = ["VG_100K/2.jpg", {"POS": ["a red car"], "NEG": ["a blue car"]}]
    wrong_swig = ["3.jpg", {"POS": ["a red car"], "NEG": ["a blue car"]}]
    wrong_vg = ["VG_100K/1.jpg", {"POS": ["a blue car"], "NEG": ["a red car"]}]
    for category in VLC_CATEGORIES:
        if category == "Object/Size/large":
            _vlc_file(root, category, "vg_obj", "vg", [right, tie])
            _vlc_file(root, category, "vg_subj", "vg", [right])
            _vlc_file(root, category, "swig_agent", "swig", [wrong_swig])
            _vlc_file(root, category, "hake", "hake", [["4.jpg", {"POS": ["a red car"], "NEG": ["a car"]}]])
        elif category == "Attribute/color":
            _vlc_file(root, category, "vg", "vg", [right, wrong_vg, right])
            _vlc_file(root, category, "vaw", "vg", [right])
        else:
            _vlc_file(root, category, "vg", "vg", [right])
    return str(root)


# --------------------------------------------------------------------------------------------- Winoground
def winoground_mini(root: Path) -> str:
    """A parquet of three items in the release's columns (photos as {bytes, path} structs):

    1. i0 red, i1 blue, c0 "red dog", c1 "blue dog": s = [[2, 0], [0, 2]]: text, image, group right;
    2. i0 red, i1 red, c0 "red dog", c1 "blue dog": text: 2 > 0 but s(c1,i1) 0 > s(c0,i1) 2 fails; image:
       s(c0,i0) 2 > s(c0,i1) 2 fails (a tie): all wrong;
    3. i0 red, i1 blue, c0 "a red and blue dog" (1, 1), c1 "blue red dog" (red 1, blue 2): text: s(c0,i0) 1 >
       s(c1,i0) 1 fails; image: 1 > 1 fails; all wrong.
    So text, image and group are each 1/3 = 33.33...%."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def jpeg(colour: str) -> dict:
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), COLOURS[colour]).save(buf, format="JPEG", quality=95)
        return {"bytes": buf.getvalue(), "path": f"{colour}.jpg"}

    rows = [(0, "red", "blue", "red dog", "blue dog"), (1, "red", "red", "red dog", "blue dog"),
            (2, "red", "blue", "a red and blue dog", "blue red dog")]
    table = pa.table({"id": [r[0] for r in rows], "image_0": [jpeg(r[1]) for r in rows],
                      "image_1": [jpeg(r[2]) for r in rows], "caption_0": [r[3] for r in rows],
                      "caption_1": [r[4] for r in rows], "tag": ["x"] * 3, "secondary_tag": [""] * 3,
                      "num_main_preds": [1] * 3, "collapsed_tag": ["Object"] * 3})
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "data" / "test-00000-of-00001.parquet")
    return str(root)


BUILDERS = {"aro": aro_mini, "sugarcrepe": sugarcrepe_mini, "vlchecklist": vlc_mini, "winoground": winoground_mini}

if __name__ == "__main__":  # python -m benchmarks.compositional_minisets OUT: the four mini-sets under OUT/NAME
    out = Path(sys.argv[1])
    for name, build in BUILDERS.items():
        print(f"{name}: {build(out / name)}")
