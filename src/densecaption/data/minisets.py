"""Constructed mini-sets: ARO, SugarCrepe, VL-CheckList and Winoground in each official file layout on tiny
solid-colour photos, and T2I-CompBench prompt files written by us (docs/constructed-sets.md).

``densecaption data fetch NAME DEST --constructed`` writes one, offline, so the whole pipeline can be tried
without the real data; the folder gets a ``CONSTRUCTED.txt`` marker and results computed on it say
"constructed" in their ``data`` (``constructed_label``). The compositional sets are built so that a
colour-word test double (``ColourModel`` in ``benchmarks/compositional_minisets.py``) has scores worked out
by hand in each builder's docstring; the tests check the benchmarks against those numbers.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from densecaption.errors import UserError
from densecaption.files import atomic_write_text, pid_alive

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "grey": (128, 128, 128)}
MARKER = "CONSTRUCTED.txt"


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


# --------------------------------------------------------------------------------------------- T2I-CompBench
COMPBENCH_PROMPTS: dict[str, tuple[str, ...]] = {
    "color": ("a red apple and a yellow banana", "a blue car and a white house"),
    "shape": ("a round clock and a square table", "a triangular sign and a round plate"),
    "texture": ("a wooden chair and a metallic lamp", "a fluffy towel and a glass vase"),
    "spatial": ("a cat on the left of a dog", "a person next to a car"),
    "non_spatial": ("A man is reading a book in the park.", "A woman is riding a bicycle down the street."),
    "complex": ("The red cup was on the left of the blue plate.", "The black cat is sleeping on the green sofa."),
    "numeracy": ("two cups", "three apples"),
}
"""Two prompts per category, written for this toolkit in the style of the official ones (not taken from them)."""

COMPBENCH_HELPERS = {
    # the complex category's 3-in-1 score reads which complex prompts are spatial and which are actions
    "complex_val_spatial.txt": ("The red cup was on the left of the blue plate.",),
    "complex_val_action.txt": ("The black cat is sleeping on the green sofa.",),
    # numeracy's object list, "singular - plural" per line
    "new_objects.txt": ("cup - cups", "apple - apples", "cat - cats", "dog - dogs", "car - cars"),
}


def compbench_mini(root: Path) -> str:
    """``<category>_val.txt`` per category (two prompts each) and the helper lists the complex and numeracy
    scorers read, as ``t2i generate --compbench-dir`` and ``t2i compbench`` expect them."""
    root.mkdir(parents=True, exist_ok=True)
    files = {f"{c}_val.txt": p for c, p in COMPBENCH_PROMPTS.items()} | COMPBENCH_HELPERS
    for name, lines in files.items():
        (root / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(root)


BUILDERS: dict[str, Callable[[Path], str]] = {"aro": aro_mini, "sugarcrepe": sugarcrepe_mini,
                                              "vlchecklist": vlc_mini, "winoground": winoground_mini}
"""The compositional benchmarks' mini-sets (scores worked out by hand for ``ColourModel``)."""

CONSTRUCTED: dict[str, Callable[[Path], str]] = {**BUILDERS, "compbench": compbench_mini}
"""Every set ``data fetch NAME DEST --constructed`` writes."""


# --------------------------------------------------------------------------------------------- the marker
def is_constructed(path: Path | str) -> bool:
    """Whether ``path`` is (or lies in, up to two folders down: Winoground's ``data/*.parquet``) a constructed
    set, i.e. has the marker."""
    path = Path(path).expanduser()
    folders = [path] if path.is_dir() else list(path.parents)[:2] if path.is_file() else []  # "sample": none
    return any((folder / MARKER).is_file() for folder in folders)


def constructed_label(path: str) -> str:
    """The data path a result records: ``PATH (constructed)`` for a constructed set, so its numbers are never
    taken for the real benchmark's; other paths unchanged."""
    return f"{path} (constructed)" if is_constructed(path) else path


def _marker_text(name: str) -> str:
    return (f"constructed: {name}\n\n"
            f"A constructed {name} set, not the real one.\n\n"
            f"Written by `densecaption data fetch {name} DEST --constructed`: a few items made up for this toolkit "
            f"in {name}'s official file layout (tiny solid-colour photos, or prompts written by us), so the "
            f"pipeline can be tried offline. Numbers computed on it say nothing about a model; results name "
            f"this data as constructed. The real files: `densecaption data fetch {name} DEST`.\n")


def constructed_name(dest: Path) -> str | None:
    """The set name a constructed folder's marker gives (its first line), or None."""
    try:
        first = (dest / MARKER).read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return None
    key, _, value = first.partition(":")
    return value.strip() if key == "constructed" else None


def write_constructed(name: str, dest: Path | str) -> tuple[Path, bool]:
    """Write the constructed set ``name`` into ``dest`` (new or empty); returns (dest, written). A ``dest``
    that already holds it is left as it is (written False). Built in a temporary folder beside ``dest`` and
    renamed into place, so a killed run leaves no half set."""
    if name not in CONSTRUCTED:
        raise UserError(f"data fetch {name!r} --constructed: choose from {', '.join(CONSTRUCTED)}")
    dest = Path(dest).expanduser()
    if constructed_name(dest) == name:
        return dest, False
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"{dest}: not an empty folder; write the constructed {name} set into a new one")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(dest)
    tmp = dest.with_name(f".{dest.name}.constructed.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        CONSTRUCTED[name](tmp)
        atomic_write_text(tmp / MARKER, _marker_text(name))
        os.replace(tmp, dest)  # replaces an empty folder, never a full one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, True


def _remove_stale_builds(dest: Path) -> None:
    """Delete the temporary folders of killed builds of ``dest`` (``.NAME.constructed.<pid>``, process gone)."""
    for path in dest.parent.glob(f".{dest.name}.constructed.*"):
        pid = path.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
