"""T2I-CompBench's prompt files and categories (docs/t2i-compbench.md).

The official files (``<category>_val.txt``, 300 prompts each, the maintainers' protocol) mostly use CRLF line
endings and some lack a final newline; ``read_prompts`` reads them all alike. Nothing here imports a model, so
``t2i generate`` can use it to read prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from densecaption.errors import UserError
from densecaption.registry import Registry


@dataclass(frozen=True)
class Category:
    """One T2I-CompBench category: its prompt file stem and the scorers that score it (empty: unsupported)."""

    name: str
    scorers: tuple[str, ...]
    note: str = ""


# name -> category; the prompt file is ``<name>_<split>.txt``. Scorer names are those of scorers.SCORERS.
CATEGORIES: Registry[Category] = Registry("T2I-CompBench category")


def _category(name: str, scorers: tuple[str, ...], summary: str, note: str = "") -> None:
    CATEGORIES.register(name, Category(name, scorers, note), summary=summary, scorers=scorers)


_category("color", ("blip-vqa",), "attribute binding: colours (BLIP-VQA)")
_category("shape", ("blip-vqa",), "attribute binding: shapes (BLIP-VQA)")
_category("texture", ("blip-vqa",), "attribute binding: textures (BLIP-VQA)")
_category("spatial", ("spatial",), "2D spatial relations (detected boxes)")
_category("non_spatial", ("clip",), "non-spatial relations such as actions (CLIP cosine)")
_category("complex", ("3-in-1",), "complex compositions (3-in-1: BLIP-VQA, spatial and CLIP by prompt type)")
_category("numeracy", ("numeracy",), "object counts (detected counts; T2I-CompBench++)")
_category("3d_spatial", (), "3D spatial relations (not scored here)",
          note="3D spatial scoring needs upstream's depth model (T2I-CompBench++), which is not supported here")

SPLITS = ("val", "train", "all")


def check_category(name: str) -> Category:
    """The category called ``name``, or a UserError naming the closest and listing the known ones."""
    return CATEGORIES.get(name)


def prompt_file(compbench_dir: Path | str, category: str, split: str = "val") -> Path:
    """``<dir>/<category>_<split>.txt`` (``split="all"``: ``<category>.txt``); a UserError if it is missing."""
    check_category(category)
    if split not in SPLITS:
        raise UserError(f"unknown prompt split {split!r} (known: {', '.join(SPLITS)})")
    folder = Path(compbench_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"--compbench-dir {folder}: no such folder (give your copy of T2I-CompBench's "
                        f"examples/dataset folder)")
    path = folder / (f"{category}.txt" if split == "all" else f"{category}_{split}.txt")
    if not path.is_file():
        raise UserError(f"{path}: no such prompt file in the T2I-CompBench folder {folder}")
    return path


def parse_prompts(text: str) -> list[str]:
    """Prompts of a file's text: one per line (CRLF, LF or CR), surrounding whitespace stripped, blank lines
    dropped; order and duplicates kept."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_prompts(path: Path | str) -> list[str]:
    """The prompts of a prompt file (see ``parse_prompts``); a UserError if it cannot be read."""
    return parse_prompts(_read_text(path))


def _read_text(path: Path | str) -> str:
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the file ({e.strerror or e})") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from e


def complex_prompt_lists(folder: Path | str) -> tuple[set[str], set[str]]:
    """The complex prompts that upstream's 3-in-1 scores as spatial and as action prompts.

    Read from every ``complex_<split>_spatial.txt`` and ``complex_<split>_action.txt`` in ``folder`` (the
    ``spatialaction`` files are not needed: upstream scores every other prompt with all three parts). Keys
    are normalised as upstream does (``complex_key``).
    """
    folder = Path(folder).expanduser()
    spatial = {complex_key(p) for f in sorted(folder.glob("complex_*_spatial.txt")) for p in read_prompts(f)}
    action = {complex_key(p) for f in sorted(folder.glob("complex_*_action.txt")) for p in read_prompts(f)}
    if not spatial or not action:
        raise UserError(f"{folder}: the complex category's 3-in-1 score needs T2I-CompBench's "
                        f"complex_val_spatial.txt and complex_val_action.txt there (pass --compbench-dir)")
    return spatial, action


def complex_key(prompt: str) -> str:
    """Upstream's key for matching complex prompts across files: the text before the first '.', lower case."""
    return prompt.strip().split(".")[0].strip().lower()


def read_object_list(path: Path | str) -> list[tuple[str, str]]:
    """T2I-CompBench's ``new_objects.txt`` ("singular - plural" per line) as (singular, plural) pairs,
    lower case, in file order (duplicates kept: upstream looks pairs up by first occurrence)."""
    pairs = []
    for n, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        singular, sep, plural = line.partition(" - ")
        if not sep or not singular.strip() or not plural.strip():
            raise UserError(f"{path} line {n}: expected 'singular - plural', got {line!r}")
        pairs.append((singular.strip().lower(), plural.strip().lower()))
    return pairs
