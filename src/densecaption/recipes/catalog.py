"""The recipes shipped with the package (``recipes/shipped/<name>.yaml``) as a registry for ``densecaption ls``.

``RECIPES`` is computed when it is read (module ``__getattr__``), so importing this module, or building the
CLI, scans no folder. An entry's target is the recipe file's path and its summary the recipe's title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from densecaption.errors import UserError
from densecaption.registry import Registry
from densecaption.recipes.schema import suggest


def shipped_dir() -> Path:
    return Path(__file__).parent / "shipped"


def shipped_registry(folder: Path | None = None) -> Registry[Path]:
    """Name -> recipe file for every ``*.yaml`` in ``folder`` (the shipped ones by default), by name."""
    import yaml

    registry: Registry[Path] = Registry("recipe")
    folder = folder if folder is not None else shipped_dir()
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            doc = None
        title = doc.get("title") if isinstance(doc, dict) else None
        summary = " ".join(str(title).split()) if title else "(unreadable: run `densecaption run NAME --dry-run`)"
        registry.register(path.stem, path, summary=summary)
    return registry


def find_recipe(name_or_path: str, *, folder: Path | None = None) -> tuple[Path, str | None]:
    """The recipe file for a shipped name or a YAML path, and the name its file must declare (shipped
    recipes: the file stem; a path: no constraint)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file() or "/" in name_or_path:
        if not path.is_file():
            raise UserError(f"{path}: no such recipe file")
        return path, None
    registry = shipped_registry(folder)
    if name_or_path not in registry:
        names = registry.names()
        raise UserError(f"no shipped recipe {name_or_path!r}{suggest(name_or_path, names)} "
                        f"(shipped: {', '.join(names) or 'none'}; or give a YAML file)")
    return registry.get(name_or_path), name_or_path


def __getattr__(name: str) -> Any:
    if name == "RECIPES":
        return shipped_registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
