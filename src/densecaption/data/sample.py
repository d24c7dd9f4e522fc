"""The sample dataset bundled with the package (13 real images in the official DCI layout)."""

from __future__ import annotations

import shutil
from pathlib import Path

from densecaption.data.dci import INNER
from densecaption.errors import UserError


def sample_dir() -> Path:
    """The folder holding the sample's README and its ``densely_captioned_images`` folder."""
    return Path(__file__).parent / "sample"


def sample_root() -> Path:
    root = sample_dir() / INNER
    if not root.is_dir():
        raise UserError(f"the bundled sample is missing from the installation ({root})")
    return root


def write_sample(out: Path | str, *, overwrite: bool = False) -> Path:
    """Copy the sample (README and official layout) to ``out``; returns the inner dataset folder."""
    out = Path(out)
    if (out / INNER).exists() and not overwrite:
        raise UserError(f"{out / INNER} already exists (use --overwrite to replace it)")
    if (out / INNER).exists():
        shutil.rmtree(out / INNER)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(sample_root(), out / INNER)
    shutil.copyfile(sample_dir() / "README.md", out / "README.md")
    return out / INNER
