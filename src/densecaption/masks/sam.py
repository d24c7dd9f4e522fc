"""SAM masks for one photo through transformers' ``SamModel``, as DCI's release ran SAM's automatic mask
generator (see ``docs/masks.md``): the image embedding once, point prompts in batches, every one of the 3
multimask outputs filtered by predicted IoU and stability, box NMS, small regions removed, then NMS again.

Model specs: ``hf:facebook/sam-vit-huge`` (what DCI used: ViT-H), ``hf:facebook/sam-vit-large``,
``hf:facebook/sam-vit-base``, SAM 2 (``hf:facebook/sam2.1-hiera-large`` and the other sizes, through
``Sam2Model``), or ``hf:DIR`` (a saved folder, e.g. ``models init-random sam``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from densecaption.masks import Mode
from densecaption.masks.edges import EdgeSettings
from densecaption.masks.relations import BitMask

if TYPE_CHECKING:
    import torch

SAM_MODELS = ("hf:facebook/sam-vit-huge", "hf:facebook/sam-vit-large", "hf:facebook/sam-vit-base")


@dataclass(frozen=True)
class SamSettings:
    """The release's generator settings (both passes)."""

    points_per_side: int = 50
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8  # kept when strictly above
    stability_thresh: float = 0.94  # kept when at or above
    stability_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.97
    min_region_area: int = 1000


@dataclass
class SamRunner:
    """A loaded SAM: the model, its processor, the device, and where it came from (weights label)."""

    model: object
    processor: object
    device: str
    spec: str
    weights: str
    sam2: bool = False  # SAM 2 (Sam2Model): points need labels, masks need no reshaped sizes

    @classmethod
    def load(cls, spec: str, device: str = "cpu") -> "SamRunner":
        """``hf:ID_OR_DIR``; a hub id needs the hub or a cached download."""
        from densecaption.errors import UserError
        from densecaption.models.weights import transformers_source

        if not spec.startswith("hf:"):
            raise UserError(f"--sam {spec!r}: give hf:ID_OR_DIR, e.g. {SAM_MODELS[0]}")
        source = transformers_source(spec[3:], label=f"--sam {spec}")
        import transformers

        try:
            kind = transformers.AutoConfig.from_pretrained(source.path_or_id).model_type
            sam2 = kind.startswith("sam2")
            if not (sam2 or kind == "sam"):
                raise UserError(f"--sam {spec}: a {kind!r} model, not SAM")
            if sam2 and not hasattr(transformers, "Sam2Model"):
                raise UserError(f"--sam {spec}: SAM 2 needs a newer transformers ({transformers.__version__})")
            model_cls = transformers.Sam2Model if sam2 else transformers.SamModel
            processor_cls = transformers.Sam2Processor if sam2 else transformers.SamProcessor
            model = model_cls.from_pretrained(source.path_or_id).to(device).eval()
            processor = processor_cls.from_pretrained(source.path_or_id)
        except OSError as e:
            raise UserError(f"--sam {spec}: cannot load ({' '.join(str(e).split())[:300]})") from None
        return cls(model, processor, device, spec, source.weights, sam2)

    def embed(self, image: np.ndarray, points: Sequence[tuple[float, float]]):
        """The image embedding (computed once per photo) and the processor's inputs for ``points`` (x, y px)."""
        import torch

        listed = [[[float(x), float(y)]] for x, y in points] or [[[0.0, 0.0]]]
        labels = {"input_labels": [[[1]] * len(listed)]} if self.sam2 else {}  # positive points
        inputs = self.processor(images=image, input_points=[listed], return_tensors="pt", **labels)
        with torch.no_grad():
            embedding = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
        return embedding, inputs

    def generate(self, embedding, inputs, start: int, stop: int, settings: SamSettings = SamSettings()) -> list[BitMask]:
        """One generator pass over prompts ``start:stop`` of ``inputs``, reusing the photo's embedding: masks
        over the thresholds, box NMS, small regions removed."""
        import torch

        points = inputs["input_points"].to(torch.float32)
        kept: list[tuple[BitMask, float]] = []
        with torch.no_grad():
            for first in range(start, stop, settings.points_per_batch):
                end = min(first + settings.points_per_batch, stop)
                prompt = {"input_points": points[:, first:end].to(self.device)}
                if self.sam2:
                    prompt["input_labels"] = inputs["input_labels"][:, first:end].to(self.device)
                out = self.model(image_embeddings=embedding, multimask_output=True, **prompt)
                ious = out.iou_scores[0].flatten()
                passed = torch.nonzero(ious > settings.pred_iou_thresh).flatten()  # before upsampling: cheaper
                low_res = out.pred_masks[0].flatten(0, 1)[passed]
                for i in range(0, len(passed), UPSAMPLE_CHUNK):  # full-size logits for a few masks at a time
                    logits = self._upsample(low_res[i:i + UPSAMPLE_CHUNK, None].float(), inputs)[:, 0]
                    kept += _filter(logits, ious[passed[i:i + UPSAMPLE_CHUNK]], settings)
        if not kept:
            return []
        masks = _nms([m for m, _ in kept], [iou for _, iou in kept], settings.box_nms_thresh)
        if settings.min_region_area <= 0:
            return masks
        height, width = (int(v) for v in inputs["original_sizes"][0])
        return remove_small_regions_all(masks, settings, height, width)

    def _upsample(self, pred_masks, inputs):
        """Low-resolution logits (N, C, h, w) of one image to its full size, unthresholded, on their device."""
        if self.sam2:
            return self.processor.post_process_masks([pred_masks], inputs["original_sizes"], binarize=False)[0]
        return self.processor.image_processor.post_process_masks(
            [pred_masks], inputs["original_sizes"], inputs["reshaped_input_sizes"], binarize=False)[0]


UPSAMPLE_CHUNK = 8
"""Prompts whose masks are upsampled to full size at once (3 x H x W float logits each)."""


def photo_masks(runner: SamRunner, image: np.ndarray, mode: Mode = "default", settings: SamSettings = SamSettings(),
                edges: EdgeSettings = EdgeSettings(), rng: random.Random | None = None) -> list[BitMask]:
    """Both passes on one RGB photo with one embedding: the regular grid, then the Canny edge points (in
    ``dci-reference`` only the first), grid masks first."""
    from densecaption.masks.edges import edge_map, edge_prompts, grid_points, pick_edge_points

    height, width = image.shape[:2]
    grid = grid_points(width, height, settings.points_per_side)
    picked = pick_edge_points(edge_map(image, edges), rng or random.Random(), mode, edges)
    prompts = edge_prompts(picked, mode)
    embedding, inputs = runner.embed(image, grid + prompts)
    masks = runner.generate(embedding, inputs, 0, len(grid), settings)
    if prompts:
        masks += runner.generate(embedding, inputs, len(grid), len(grid) + len(prompts), settings)
    return masks


def _filter(logits: "torch.Tensor", ious: "torch.Tensor", s: SamSettings) -> list[tuple[BitMask, float]]:
    """Full-size masks (N, H, W logits, on the model's device) whose stability is at least the threshold, as
    (mask scored IoU x stability^2, IoU); only each mask's box crop leaves the device."""
    high = (logits > s.mask_threshold + s.stability_offset).flatten(1).sum(1)
    low = (logits > s.mask_threshold - s.stability_offset).flatten(1).sum(1)
    stability = (high / low.clamp(min=1)).tolist()
    out = []
    for logit, iou, stab in zip(logits, ious.tolist(), stability):
        if stab < s.stability_thresh:
            continue
        mask = logit > s.mask_threshold
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        if len(rows) == 0:
            continue
        t, b, l, r = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        out.append((BitMask(t, l, b, r, mask[t:b, l:r].cpu().numpy(), iou * stab ** 2), iou))
    return out


def _boxes(masks: Sequence[BitMask]) -> "torch.Tensor":
    import torch

    return torch.tensor([[m.left, m.top, m.right - 1, m.bottom - 1] for m in masks], dtype=torch.float32)


def _nms(masks: Sequence[BitMask], scores: Sequence[float], thresh: float) -> list[BitMask]:
    """Box non-maximum suppression (torchvision), highest score first."""
    import torch
    from torchvision.ops import nms

    keep = nms(_boxes(masks), torch.tensor(scores, dtype=torch.float32), thresh)
    return [masks[i] for i in keep.tolist()]


def fill_small_regions(bits: np.ndarray, area: int, mode: str,
                       open_sides: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> tuple[np.ndarray, bool]:
    """SAM's clean-up of one mask crop: ``holes`` fills background pieces under ``area`` px, ``islands``
    removes foreground pieces under it (8-connected). ``open_sides`` (top, bottom, left, right) says which
    sides of the crop lie inside the photo: background reaching such a side joins the rest of the photo's
    background and is never a hole, while background cut off by the photo's own edge can be one. Returns the
    crop and whether it changed."""
    import cv2

    holes = mode == "holes"
    t, b, l, r = (int(o) for o in open_sides)
    work = np.pad(~bits if holes else bits, ((t, b), (l, r)), constant_values=holes).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(work, connectivity=8)
    inner = labels[t:labels.shape[0] - b, l:labels.shape[1] - r]
    outside = set(np.unique(np.concatenate([labels[:t].ravel(), labels[labels.shape[0] - b:].ravel(),
                                            labels[:, :l].ravel(), labels[:, labels.shape[1] - r:].ravel()])).tolist())
    small = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] < area and not (holes and i in outside)]
    if not small:
        return bits, False
    if holes:
        return bits | np.isin(inner, small), True
    keep = [i for i in range(1, n) if i not in small]
    if not keep:  # SAM keeps the largest piece rather than empty the mask
        keep = [int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1]
    return np.isin(inner, keep), True


def remove_small_regions_all(masks: Sequence[BitMask], s: SamSettings, height: int, width: int) -> list[BitMask]:
    """Holes then islands under ``min_region_area`` removed from every mask of a ``height`` x ``width``
    photo, then box NMS preferring masks the clean-up left unchanged (SAM's ``postprocess_small_regions``)."""
    cleaned, unchanged = [], []
    for m in masks:
        sides = (m.top > 0, m.bottom < height, m.left > 0, m.right < width)
        bits, filled = fill_small_regions(m.bits, s.min_region_area, "holes", sides)
        bits, cut = fill_small_regions(bits, s.min_region_area, "islands", sides)
        full = BitMask(m.top, m.left, m.bottom, m.right, bits, m.score)
        cleaned.append(_recrop(full) if cut else full)
        unchanged.append(0.0 if (filled or cut) else 1.0)
    return _nms(cleaned, unchanged, s.box_nms_thresh)


def _recrop(m: BitMask) -> BitMask:
    inner = BitMask.from_full(m.bits, m.score)
    return BitMask(m.top + inner.top, m.left + inner.left, m.top + inner.bottom, m.left + inner.right,
                   inner.bits, m.score)
