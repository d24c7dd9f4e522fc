"""Our model contract as the CLIP-like model ``clip_benchmark`` expects, and ImageNet-style folders as its data.

``clip_benchmark.metrics.zeroshot_classification`` wants a model with ``encode_image(images)`` and
``encode_text(tokens)``, a tokenizer whose output has ``.to(device)``, and a data loader of
``(images, targets)`` whose dataset has ``classes``. Here the loader yields image *indices*, the "tokenizer"
passes the texts through, and the adapter encodes both with ``ImageTextModel.encode_images`` /
``encode_texts`` (so a LoRA adapter merged by ``load_model`` is used as everywhere else). The linear probe gets
the features in its own cache format. See docs/scorers-and-classification.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import torch

from densecaption.errors import DataError, UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageFolderSplit:
    """One split of an ImageNet-style folder: ``DIR/<split>/<class folder>/<image>``, folders sorted."""

    root: Path
    split: str
    folders: tuple[str, ...]
    files: tuple[Path, ...]
    targets: tuple[int, ...]


def open_split(root: str | Path, split: str) -> ImageFolderSplit:
    """The split's class folders (sorted, as torchvision's ImageFolder) and images; bad layouts refused."""
    from torchvision.datasets.folder import make_dataset

    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder (expected DIR/{split}/<class folder>/<image>)")
    folders = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
    if not folders:
        raise UserError(f"{folder}: no class folders (expected {folder}/<class folder>/<image>)")
    samples = make_dataset(str(folder), {name: i for i, name in enumerate(folders)}, IMAGE_EXTENSIONS,
                           allow_empty=True)
    if not samples:
        raise DataError(f"{folder}: its class folders hold no images ({', '.join(IMAGE_EXTENSIONS)})")
    return ImageFolderSplit(folder, split, folders, tuple(Path(p) for p, _ in samples),
                            tuple(t for _, t in samples))


def split_sha256(split: ImageFolderSplit) -> str:
    """SHA-256 over each image's relative path and size (the bytes of a million photos are not read)."""
    h = hashlib.sha256()
    for path in split.files:
        h.update(f"{path.relative_to(split.root).as_posix()}\t{path.stat().st_size}\n".encode())
    return h.hexdigest()


def _shipped(name: str) -> dict:
    return json.loads(resources.files("clip_benchmark.datasets").joinpath(name).read_text())


def class_names(choice: str, folders: Sequence[str]) -> list[str]:
    """``auto``: clip_benchmark's ImageNet names for exactly 1000 folders (the sorted wnids), else the folder
    names with ``_`` as spaces; a clip_benchmark dataset name (``imagenet1k``, ``cifar10``, ...); or a file:
    one name per line in folder order, or a JSON object folder -> name."""
    shipped = _shipped("en_classnames.json")
    if choice == "auto":
        choice = "imagenet1k" if len(folders) == 1000 else "folders"
    if choice == "folders":
        return [f.replace("_", " ") for f in folders]
    if choice in shipped:
        names = list(shipped[choice])
    else:
        path = Path(choice).expanduser()
        if not path.is_file():
            raise UserError(f"--classnames {choice}: not a file, 'auto', 'folders' or a clip_benchmark dataset "
                            f"({', '.join(sorted(shipped))})")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            mapping = json.loads(text)
            missing = [f for f in folders if f not in mapping]
            if missing:
                raise UserError(f"--classnames {path}: no name for class folder(s) {', '.join(missing[:5])}")
            return [str(mapping[f]) for f in folders]
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != len(folders):
        raise UserError(f"--classnames {choice}: {len(names)} names for {len(folders)} class folders")
    return names


def templates(choice: str) -> list[str]:
    """Prompt templates with ``{c}``: a clip_benchmark dataset's (``imagenet1k``: CLIP's 80) or a file, one
    per line."""
    shipped = _shipped("en_zeroshot_classification_templates.json")
    if choice in shipped:
        return list(shipped[choice])
    path = Path(choice).expanduser()
    if not path.is_file():
        raise UserError(f"--templates {choice}: not a file or a clip_benchmark dataset ({', '.join(sorted(shipped))})")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines or any("{c}" not in line for line in lines):
        raise UserError(f"--templates {path}: every line must hold {{c}}, the class name")
    return lines


def require_embedding_model(model, task: str) -> None:
    """Classification needs separate image and text embeddings; say in one line why a model has none."""
    from densecaption.models.base import EmbeddingModel

    if not getattr(model, "uses_images", True):
        raise UserError(f"{task}: {model.spec} is a text-only language prior: its score ignores the image, so "
                        f"every image would get the same class; {task} needs an image-text embedding model")
    if not isinstance(model, EmbeddingModel):
        raise UserError(f"{task}: {model.spec} scores (image, text) pairs jointly and has no image or text "
                        f"embedding; {task} needs an embedding model (for BLIP or FLAVA add #head=itc)")


class Texts(list):
    """What the pass-through tokenizer returns: the texts, with the ``.to(device)`` clip_benchmark calls."""

    def to(self, device) -> "Texts":
        return self


class IndexDataset(torch.utils.data.Dataset):
    """Items ``(index, target)``; the adapter turns indices into images. ``classes`` as clip_benchmark reads."""

    def __init__(self, targets: Sequence[int], classes: Sequence[str]):
        self.targets, self.classes = list(targets), list(classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return i, self.targets[i]


class ContractAsClip(torch.nn.Module):
    """``encode_image(indices)`` / ``encode_text(texts)`` over an ``ImageTextModel`` and a list of image files."""

    def __init__(self, model, files: Sequence[Path], device: str, advance: Callable[[int], None] = lambda n: None):
        super().__init__()
        self.contract, self.files, self.out_device, self.advance = model, list(files), device, advance
        self.encoded_images = self.encoded_texts = 0

    def encode_image(self, indices: torch.Tensor) -> torch.Tensor:
        features = self.contract.encode_images(load_images([self.files[i] for i in indices.tolist()]))
        self.encoded_images += len(features)
        self.advance(len(features))
        return features.to(self.out_device)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        self.encoded_texts += len(texts)
        return self.contract.encode_texts(list(texts)).to(self.out_device)


def load_images(paths: Sequence[Path]) -> list:
    from PIL import Image, UnidentifiedImageError

    out = []
    for path in paths:
        try:
            with Image.open(path) as im:
                out.append(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{path}: cannot read the image ({e})") from e
    return out


def torch_device_type(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


class _CpuPassingForCuda(str):
    """The string "cpu" that equals "cuda" too: clip_benchmark's linear probe asserts ``device == 'cuda'``."""

    def __eq__(self, other) -> bool:
        return str.__eq__(self, other) or other == "cuda"

    __hash__ = str.__hash__


@contextlib.contextmanager
def probe_device():
    """The device for clip_benchmark's linear probe, which only runs on CUDA (``assert device == 'cuda'``,
    ``.cuda()`` calls): ``cuda`` where there is a GPU; on a CPU-only machine the CPU, with ``.cuda()`` a no-op
    for the block (restored after) so that the library's own training loop runs unchanged."""
    from unittest import mock

    if torch.cuda.is_available():
        yield "cuda"
        return
    identity = lambda self, *args, **kwargs: self  # noqa: E731
    with mock.patch.object(torch.nn.Module, "cuda", identity), mock.patch.object(torch.Tensor, "cuda", identity), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pin_memory.*")  # its loaders pin memory for a GPU
        yield _CpuPassingForCuda("cpu")


def topk_accuracy(output: torch.Tensor, target: torch.Tensor, topk=(1,)) -> list[float]:
    """clip_benchmark's ``accuracy`` (share of rows whose target is among the k highest logits) with its
    scalar conversion fixed: its ``float(array of shape (1,))`` raises under NumPy 2."""
    predicted = output.topk(max(topk), 1, True, True)[1].t()
    correct = predicted.eq(target.view(1, -1).expand_as(predicted))
    return [float(correct[:k].reshape(-1).float().sum()) / len(target) for k in topk]


@contextlib.contextmanager
def library_fixes():
    """For the block, clip_benchmark's metrics modules use ``topk_accuracy`` as their ``accuracy`` and no
    tqdm bars (this tool shows its own progress of the images encoded)."""
    from unittest import mock

    from clip_benchmark.metrics import linear_probe, zeroshot_classification

    quiet = lambda iterable, *args, **kwargs: iterable  # noqa: E731
    with mock.patch.object(zeroshot_classification, "accuracy", topk_accuracy), \
            mock.patch.object(linear_probe, "accuracy", topk_accuracy), \
            mock.patch.object(zeroshot_classification, "tqdm", quiet), mock.patch.object(linear_probe, "tqdm", quiet):
        yield
