"""The models T2I-CompBench scores with, each behind one small contract, found through registries.

* VQA (``VqaModel.yes_probabilities``): BLIP VQA through transformers (``BlipForQuestionAnswering``), a hub id
  (default ``Salesforce/blip-vqa-capfilt-large``, upstream's checkpoint) or a local folder.
* Detectors (``Detector.detect``), keyed by a spec string ``KIND[:ID_OR_DIR]``: ``owlvit``, ``owlv2`` and
  ``grounding-dino`` (transformers' zero-shot object detectors, queried with the prompt's object names) and
  ``opencv-haar`` (OpenCV's Haar cascades: a real but weak face detector, for offline tests). Upstream used
  UniDet, which needs detectron2; its labels are matched by name, as here.
* CLIP: any ``densecaption.models.registry`` spec (``open_clip:ViT-B-32:openai`` by default).

Hub ids need network access or the Hugging Face cache; tests save tiny random models to folders
(``models/tiny_blip.py``, ``models/tiny_detector.py``) and load them back through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from PIL.Image import Image

from densecaption.errors import UserError
from densecaption.evaluation.compbench.scoring import Box, Detection, box_iou, yes_probability
from densecaption.models.weights import transformers_source
from densecaption.registry import Registry

DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-capfilt-large"
DEFAULT_VQA_IMAGE_SIZE = 480  # upstream's configs/vqa.yaml
DEFAULT_DETECTOR = "owlv2:google/owlv2-base-patch16-ensemble"
DEFAULT_CLIP_MODEL = "open_clip:ViT-B-32:openai"
DEFAULT_THRESHOLD = 0.5
NMS_IOU = 0.5  # per-label NMS on transformers detectors, as detectron2 (UniDet) applies at test time
QUESTION_MAX_TOKENS = 35  # BLIP VQA truncates questions there
GROUNDING_TEXT_THRESHOLD = 0.25

# kind -> loader(parsed, *, spec, device, threshold) -> Detector. Metadata: ``needs_model`` (the spec names a
# hub id or folder after the kind, ``KIND:ID_OR_DIR``), ``spec`` (its form, for help texts) and, for
# transformers detectors, ``model_type`` (the config's, checked on loading) and ``query`` (how it is asked).
DETECTORS: Registry = Registry("detector kind")
_HF_DETECTOR = "densecaption.evaluation.compbench.models:load_hf_detector"
DETECTORS.register("owlv2", _HF_DETECTOR,
                   summary="OWLv2, a transformers zero-shot detector queried with object names",
                   needs_model=True, spec="owlv2:ID_OR_DIR", model_type="owlv2", query="owl")
DETECTORS.register("owlvit", _HF_DETECTOR,
                   summary="OWL-ViT, a transformers zero-shot detector queried with object names",
                   needs_model=True, spec="owlvit:ID_OR_DIR", model_type="owlvit", query="owl")
DETECTORS.register("grounding-dino", _HF_DETECTOR,
                   summary="Grounding DINO, a transformers zero-shot detector queried with object names",
                   needs_model=True, spec="grounding-dino:ID_OR_DIR", model_type="grounding-dino",
                   query="grounding_dino")
DETECTORS.register("opencv-haar", "densecaption.evaluation.compbench.models:load_haar",
                   summary="OpenCV's Haar cascades, finding frontal faces as 'person' and 'cat' (weak: offline "
                           "checks only)",
                   needs_model=False, spec="opencv-haar")


def _load_error(what: str, spec: str, weights: str, error: Exception) -> UserError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if weights == "pretrained":
        return UserError(f"{what} {spec!r}: could not load it from the hub: no network access or Hugging Face "
                         f"cache for it ({first}). Download the model elsewhere and pass its folder")
    return UserError(f"{what} {spec!r}: could not load the model folder ({first})")


# --------------------------------------------------------------------------------------------------------------
# VQA

class VqaModel(Protocol):
    spec: str
    weights: str

    def yes_probabilities(self, images: Sequence[Image], questions: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each image, p = P(yes) / (P(yes) + P(no)) of each of its questions."""


@dataclass
class BlipVqa:
    """BLIP VQA as upstream scores it: image resized to ``image_size`` (480), question tokenised with its first
    token replaced by BLIP's [ENC] token, one decoder step from [DEC], p from the yes and no logits.

    transformers' own ``BlipForQuestionAnswering.forward`` keeps [CLS] first and returns no logits, so the three
    sub-models are called directly. [ENC] is the tokenizer's ``[ENC]`` token, else the id after [DEC] when the
    vocabulary has exactly that one extra row (BLIP's layout); else [CLS] stays (``question_start`` says which).
    """

    model: Any
    processor: Any
    spec: str
    weights: str
    device: str = "cpu"
    image_size: int = DEFAULT_VQA_IMAGE_SIZE
    batch_size: int = 64
    yes_id: int = field(init=False)
    no_id: int = field(init=False)
    enc_id: int | None = field(init=False)

    def __post_init__(self):
        tok = self.processor.tokenizer
        unk = tok.unk_token_id
        ids = {w: tok.convert_tokens_to_ids(w) for w in ("yes", "no", "[ENC]")}
        if ids["yes"] in (None, unk) or ids["no"] in (None, unk):
            raise UserError(f"VQA model {self.spec!r}: its tokenizer has no whole 'yes' and 'no' tokens")
        self.yes_id, self.no_id = ids["yes"], ids["no"]
        text = self.model.config.text_config
        if ids["[ENC]"] not in (None, unk):
            self.enc_id = ids["[ENC]"]
        elif text.bos_token_id is not None and text.vocab_size == text.bos_token_id + 2:
            self.enc_id = text.bos_token_id + 1
        else:
            self.enc_id = None
        self.model = self.model.eval().to(self.device)

    @property
    def question_start(self) -> str:
        return "[ENC]" if self.enc_id is not None else "[CLS]"

    def yes_probabilities(self, images: Sequence[Image], questions: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        out: list[list[float]] = [[] for _ in images]
        pairs = [(i, q) for i, qs in enumerate(questions) for q in qs]
        if not pairs:
            return out
        size = {"height": self.image_size, "width": self.image_size}
        rgb = [im.convert("RGB") for im in images]
        pixels = self.processor.image_processor(rgb, size=size, return_tensors="pt")["pixel_values"]
        interpolate = self.image_size != int(self.model.config.vision_config.image_size)
        with torch.inference_mode():
            vision = self.model.vision_model(pixel_values=pixels.to(self.device),
                                             interpolate_pos_encoding=interpolate).last_hidden_state
            for start in range(0, len(pairs), self.batch_size):
                chunk = pairs[start:start + self.batch_size]
                logits = self._first_step_logits(vision[[i for i, _ in chunk]], [q for _, q in chunk])
                for (i, _), row in zip(chunk, logits.tolist()):
                    out[i].append(yes_probability(row[0], row[1]))
        return out

    def _first_step_logits(self, image_embeds, questions: list[str]):
        """(n, 2) logits of "yes" and "no" as the first answer token."""
        import torch

        tokens = self.processor.tokenizer(questions, padding="longest", truncation=True,
                                          max_length=QUESTION_MAX_TOKENS, return_tensors="pt")
        input_ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        if self.enc_id is not None:
            input_ids[:, 0] = self.enc_id
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        question = self.model.text_encoder(input_ids=input_ids, attention_mask=mask,
                                           encoder_hidden_states=image_embeds,
                                           encoder_attention_mask=image_mask).last_hidden_state
        start = torch.full((len(questions), 1), self.model.config.text_config.bos_token_id, device=self.device)
        logits = self.model.text_decoder(input_ids=start, encoder_hidden_states=question,
                                         encoder_attention_mask=mask).logits[:, 0, :]
        return logits[:, [self.yes_id, self.no_id]].float().cpu()


def load_blip_vqa(spec: str, *, device: str = "cpu", image_size: int = DEFAULT_VQA_IMAGE_SIZE) -> BlipVqa:
    """A BLIP VQA model from a hub id or folder (an ``hf:`` prefix is accepted)."""
    import torch
    from transformers import AutoConfig, BlipForQuestionAnswering, BlipProcessor

    target = spec[3:] if spec.startswith("hf:") else spec
    resolved = transformers_source(target, label=f"VQA model {spec!r}")
    source, weights = resolved.path_or_id, resolved.weights
    try:
        config = AutoConfig.from_pretrained(source)
        if getattr(config, "model_type", None) != "blip":
            raise UserError(f"VQA model {spec!r}: model_type {config.model_type!r} is not BLIP")
        model = BlipForQuestionAnswering.from_pretrained(source, dtype=torch.float32)
        processor = BlipProcessor.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise _load_error("VQA model", spec, weights, e) from e
    return BlipVqa(model=model, processor=processor, spec=spec, weights=weights, device=device,
                   image_size=image_size)


# --------------------------------------------------------------------------------------------------------------
# Detectors

class Detector(Protocol):
    kind: str
    spec: str
    weights: str

    def detect(self, images: Sequence[Image], labels: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """For each image, the detections of its labels at or above the threshold, highest confidence first;
        each detection's label is one of that image's labels."""


@dataclass(frozen=True)
class DetectorSpec:
    kind: str
    target: str

    @classmethod
    def parse(cls, spec: str) -> "DetectorSpec":
        kind, _, target = spec.partition(":")
        if kind not in DETECTORS:
            raise UserError(f"detector {spec!r}: {DETECTORS.unknown_message(kind)}; e.g. {DEFAULT_DETECTOR}")
        needs_target = DETECTORS.entry(kind).meta["needs_model"]
        if needs_target and not target:
            raise UserError(f"detector {spec!r}: give a hub id or folder, e.g. {kind}:ID_OR_DIR")
        if not needs_target and target:
            raise UserError(f"detector {spec!r}: {kind} takes no model (write just {kind!r})")
        return cls(kind, target)


def nms_per_label(detections: Sequence[Detection], iou: float = NMS_IOU) -> list[Detection]:
    """Greedy non-maximum suppression within each label, highest confidence first (result in that order)."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if not any(k.label == d.label and box_iou(k.box, d.box) > iou for k in kept):
            kept.append(d)
    return kept


@dataclass
class HFZeroShotDetector:
    """OWL-ViT, OWLv2 or Grounding DINO queried with each image's object names; boxes in the image's pixels,
    filtered at ``threshold``, per-label NMS at IoU 0.5, highest confidence first."""

    kind: str
    model: Any
    processor: Any
    spec: str
    weights: str
    device: str = "cpu"
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self):
        self.model = self.model.eval().to(self.device)

    def detect(self, images: Sequence[Image], labels: Sequence[Sequence[str]]) -> list[list[Detection]]:
        import torch

        wanted = [list(dict.fromkeys(ls)) for ls in labels]
        out: list[list[Detection]] = [[] for _ in images]
        todo = [i for i, ls in enumerate(wanted) if ls]
        if not todo:
            return out
        rgb = [images[i].convert("RGB") for i in todo]
        sizes = [(im.height, im.width) for im in rgb]
        queries = [wanted[i] for i in todo]
        with torch.inference_mode():
            found = getattr(self, "_" + DETECTORS.entry(self.kind).meta["query"])(rgb, sizes, queries)
        for i, dets in zip(todo, found):
            out[i] = nms_per_label([d for d in dets if d.label in wanted[i]])
        return out

    def _owl(self, images, sizes, queries) -> list[list[Detection]]:
        """Images with fewer queries get padding queries whose first token id is 0: OWL's query mask (first
        token > 0) then gives them no score (the processor's own " " padding would compete for boxes)."""
        import torch

        width = max(len(q) for q in queries)
        padded = [q + [" "] * (width - len(q)) for q in queries]
        context = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.processor.tokenizer([t for q in queries for t in q], padding="max_length", truncation=True,
                                          max_length=context, return_tensors="pt")
        input_ids = torch.zeros((len(queries) * width, context), dtype=torch.long)
        attention_mask = torch.ones_like(input_ids)
        rows = [i * width + j for i, q in enumerate(queries) for j in range(len(q))]
        input_ids[rows], attention_mask[rows] = tokens["input_ids"], tokens["attention_mask"]
        pixels = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
        outputs = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                             pixel_values=pixels.to(self.device))
        results = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.threshold, target_sizes=sizes, text_labels=padded)
        return [_detections(r["text_labels"], r["scores"], r["boxes"]) for r in results]

    def _grounding_dino(self, images, sizes, queries) -> list[list[Detection]]:
        texts = [". ".join(q) + "." for q in queries]
        inputs = self.processor(images=images, text=texts, padding=True, return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        results = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.threshold, text_threshold=GROUNDING_TEXT_THRESHOLD,
            target_sizes=sizes)
        return [_detections(r["text_labels"], r["scores"], r["boxes"]) for r in results]


def _detections(names, scores, boxes) -> list[Detection]:
    return [Detection(str(n).strip(), float(s), Box(*(float(v) for v in b.tolist())))
            for n, s, b in zip(names, scores, boxes)]


def load_hf_detector(parsed: DetectorSpec, *, spec: str, device: str, threshold: float) -> HFZeroShotDetector:
    import torch
    from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

    resolved = transformers_source(parsed.target, label=f"detector {spec!r}")
    source, weights = resolved.path_or_id, resolved.weights
    try:
        config = AutoConfig.from_pretrained(source)
        model_type = DETECTORS.entry(parsed.kind).meta["model_type"]
        if getattr(config, "model_type", None) != model_type:
            raise UserError(f"detector {spec!r}: the model is a {config.model_type!r}, not {model_type!r} "
                            f"(use the matching KIND: prefix)")
        model = AutoModelForZeroShotObjectDetection.from_pretrained(source, dtype=torch.float32)
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise _load_error("detector", spec, weights, e) from e
    return HFZeroShotDetector(kind=parsed.kind, model=model, processor=processor, spec=spec, weights=weights,
                              device=device, threshold=threshold)


@dataclass(frozen=True)
class HaarCascade:
    file: str
    scale_factor: float
    min_neighbors: int


# label -> OpenCV's cascade for it (files in cv2.data.haarcascades); other labels are never found.
HAAR_CASCADES = {
    "person": HaarCascade("haarcascade_frontalface_default.xml", 1.1, 5),
    "cat": HaarCascade("haarcascade_frontalcatface.xml", 1.05, 3),
}


@dataclass
class HaarDetector:
    """OpenCV's Haar cascades: person = a frontal human face, cat = a frontal cat face (HAAR_CASCADES).

    A weak detector (faces only, many misses), here because it is real and works offline. Cascades give no
    calibrated probability, so every detection has confidence 1.0 (the threshold never removes one); a label's
    detections are ordered by box area, largest first.
    """

    kind: str = "opencv-haar"
    spec: str = "opencv-haar"
    weights: str = "pretrained"
    _cascades: dict[str, Any] = field(default_factory=dict)

    def _cascade(self, label: str):
        import cv2

        if label not in self._cascades:
            path = Path(cv2.data.haarcascades) / HAAR_CASCADES[label].file
            cascade = cv2.CascadeClassifier(str(path))
            if cascade.empty():
                raise UserError(f"opencv-haar: cannot load {path} (OpenCV 5 no longer ships Haar cascades; "
                                f"install opencv-python-headless<5)")
            self._cascades[label] = cascade
        return self._cascades[label]

    def detect(self, images: Sequence[Image], labels: Sequence[Sequence[str]]) -> list[list[Detection]]:
        import cv2
        import numpy as np

        out = []
        for image, wanted in zip(images, labels):
            known = [lb for lb in dict.fromkeys(wanted) if lb in HAAR_CASCADES]
            if not known:
                out.append([])
                continue
            gray = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
            dets = []
            for label in known:
                c = HAAR_CASCADES[label]
                rects = self._cascade(label).detectMultiScale(gray, scaleFactor=c.scale_factor,
                                                              minNeighbors=c.min_neighbors)
                boxes = sorted((Box(float(x), float(y), float(x + w), float(y + h)) for x, y, w, h in rects),
                               key=lambda b: -b.area)
                dets += [Detection(label, 1.0, b) for b in boxes]
            out.append(dets)
        return out


def load_haar(parsed: DetectorSpec, *, spec: str, device: str, threshold: float) -> HaarDetector:
    return HaarDetector()


def load_detector(spec: str, *, device: str = "cpu", threshold: float = DEFAULT_THRESHOLD) -> Detector:
    """A detector from its spec string ``KIND[:ID_OR_DIR]`` (see DETECTORS)."""
    parsed = DetectorSpec.parse(spec)
    return DETECTORS.get(parsed.kind)(parsed, spec=spec, device=device, threshold=threshold)


# --------------------------------------------------------------------------------------------------------------
# CLIP

@dataclass
class ClipSimilarity:
    """Raw cosine similarity of CLIP image and text features (``models.registry`` backends normalise them)."""

    model: Any

    @property
    def spec(self) -> str:
        return self.model.spec

    @property
    def weights(self) -> str:
        return self.model.weights

    def cosines(self, images: Sequence[Image], texts: Sequence[str]) -> list[float]:
        image_features = self.model.encode_images([im.convert("RGB") for im in images])
        text_features = self.model.encode_texts(list(texts))
        return (image_features * text_features).sum(dim=-1).tolist()


def load_clip(spec: str, *, device: str = "cpu") -> ClipSimilarity:
    from densecaption.models.registry import load_model

    return ClipSimilarity(load_model(spec, device=device))
