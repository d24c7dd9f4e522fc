"""Scorers: a category's formula (``scoring``) over a batch of images, with the models it needs (``models``).

Every scorer has a ``name`` (the result's mode), a ``config`` (settings that make two results comparable),
``models()`` (the models it used, with their weights) and ``score(records, images) -> rows``: one dict per
image with ``score`` and the parts that made it. Models and the spaCy pipeline come from a ``ModelPool``, which
loads each once per invocation and shares it across runs and categories.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL.Image import Image

from densecaption.errors import UserError
from densecaption.evaluation.compbench import scoring
from densecaption.evaluation.compbench.models import (DEFAULT_CLIP_MODEL, DEFAULT_DETECTOR, DEFAULT_THRESHOLD,
                                                      DEFAULT_VQA_IMAGE_SIZE, DEFAULT_VQA_MODEL, DetectorSpec,
                                                      load_blip_vqa, load_clip, load_detector)
from densecaption.evaluation.compbench.prompts import complex_key, complex_prompt_lists, read_object_list
from densecaption.evaluation.compbench.scoring import Token
from densecaption.registry import Registry


@dataclass(frozen=True)
class CompbenchSettings:
    """What the scorers use: model specs, detector threshold, device, batch size, and where T2I-CompBench's
    helper lists live (``compbench_dir``; default: beside each run's prompt file)."""

    vqa_model: str = DEFAULT_VQA_MODEL
    vqa_image_size: int = DEFAULT_VQA_IMAGE_SIZE
    detector: str = DEFAULT_DETECTOR
    threshold: float = DEFAULT_THRESHOLD
    clip_model: str = DEFAULT_CLIP_MODEL
    spacy_model: str = "en_core_web_sm"
    device: str = "auto"
    batch_size: int = 16
    compbench_dir: str | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One row of a run's images.jsonl."""

    file: str
    prompt: str
    prompt_index: int
    image_index: int
    seed: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "prompt": self.prompt, "prompt_index": self.prompt_index,
                "image_index": self.image_index, "seed": self.seed}


@dataclass(frozen=True)
class Analysis:
    """What the formulas need from spaCy: tokens (text, POS, whitespace) and noun-chunk texts."""

    tokens: tuple[Token, ...]
    noun_chunks: tuple[str, ...]


@dataclass
class ModelPool:
    """Loads each model on first use and keeps it for the whole invocation."""

    settings: CompbenchSettings
    _cache: dict[str, Any] = field(default_factory=dict)
    _analyses: dict[str, Analysis] = field(default_factory=dict)

    def _get(self, key: str, load: Callable[[], Any]) -> Any:
        if key not in self._cache:
            from densecaption.t2i.pipelines import quiet_hf

            with quiet_hf():  # no weight-loading bars between the command's own progress
                self._cache[key] = load()
        return self._cache[key]

    @property
    def device(self) -> str:
        from densecaption.models.registry import resolve_device

        return resolve_device(self.settings.device)

    def vqa(self):
        s = self.settings
        return self._get("vqa", lambda: load_blip_vqa(s.vqa_model, device=self.device, image_size=s.vqa_image_size))

    def detector(self):
        s = self.settings
        return self._get("detector", lambda: load_detector(s.detector, device=self.device, threshold=s.threshold))

    def clip(self):
        return self._get("clip", lambda: load_clip(self.settings.clip_model, device=self.device))

    def nlp(self):
        from densecaption.language import load_spacy

        return self._get("nlp", lambda: load_spacy(self.settings.spacy_model))

    @property
    def spacy_loaded(self) -> str | None:
        return self._cache["nlp"][1] if "nlp" in self._cache else None

    def analyse(self, prompt: str) -> Analysis:
        """spaCy's tokens and noun chunks of a prompt (cached: a prompt has several images)."""
        if prompt not in self._analyses:
            doc = self.nlp()[0](prompt)
            self._analyses[prompt] = Analysis(
                tokens=tuple(Token(t.text, t.pos_, t.whitespace_) for t in doc),
                noun_chunks=tuple(c.text for c in doc.noun_chunks))
        return self._analyses[prompt]


class Scorer(ABC):
    name: str

    def __init__(self, pool: ModelPool):
        self.pool = pool

    @property
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Settings that make two results of this scorer comparable (part of the result's identity)."""

    @abstractmethod
    def models(self) -> dict[str, dict[str, str]]:
        """name -> {"model": spec, "weights": ...} of the models used (after ``score``)."""

    @abstractmethod
    def score(self, records: Sequence[ImageRecord], images: Sequence[Image]) -> list[dict[str, Any]]:
        """One row per image: ``score`` and its parts."""


class BlipVqaScorer(Scorer):
    """Colour, shape, texture: product over the prompt's noun phrases of BLIP-VQA's p(yes) for "{phrase}?"."""

    name = "blip-vqa"

    @property
    def config(self) -> dict[str, Any]:
        s = self.pool.settings
        return {"vqa_model": s.vqa_model, "vqa_image_size": s.vqa_image_size, "spacy_model": s.spacy_model}

    def models(self) -> dict[str, dict[str, str]]:
        vqa = self.pool.vqa()
        return {self.name: {"model": vqa.spec, "weights": vqa.weights, "question_start": vqa.question_start}}

    def score(self, records, images):
        questions = [[scoring.vqa_question(p) for p in
                      scoring.vqa_noun_phrases(self.pool.analyse(r.prompt).noun_chunks)] for r in records]
        probabilities = self.pool.vqa().yes_probabilities(images, questions)
        return [{"score": scoring.vqa_image_score(ps),
                 "questions": [{"question": q, "p_yes": p} for q, p in zip(qs, ps)]}
                for qs, ps in zip(questions, probabilities)]


class SpatialScorer(Scorer):
    """Spatial: the two objects' detections and their geometry (``scoring.spatial_score``); complex prompts
    find the objects around the spatial phrase (``scoring.complex_objects``)."""

    def __init__(self, pool: ModelPool, *, complex_prompts: bool = False):
        super().__init__(pool)
        self.complex_prompts = complex_prompts
        self.name = f"spatial-{DetectorSpec.parse(pool.settings.detector).kind}"

    @property
    def config(self) -> dict[str, Any]:
        s = self.pool.settings
        return {"detector": s.detector, "threshold": s.threshold, "spacy_model": s.spacy_model,
                "objects": "complex" if self.complex_prompts else "simple"}

    def models(self):
        det = self.pool.detector()
        return {self.name: {"model": det.spec, "weights": det.weights}}

    def score(self, records, images):
        extract = scoring.complex_objects if self.complex_prompts else scoring.simple_objects
        objects = [extract(self.pool.analyse(r.prompt).tokens) for r in records]
        detections = self.pool.detector().detect(images, [[o for o in pair if o] for pair in objects])
        rows = []
        for r, (o1, o2), dets in zip(records, objects, detections):
            relation = scoring.find_relation(r.prompt)
            s = scoring.spatial_score(relation, o1, o2, dets)
            rows.append({"score": s.score, "raw_score": s.raw, "relation": relation, "objects": [o1, o2],
                         "position": s.position, "first": s.first.as_dict() if s.first else None,
                         "last": s.last.as_dict() if s.last else None})
        return rows


class ClipScorer(Scorer):
    """Non-spatial: raw cosine of CLIP image and prompt features (complex prompts: without adjectives)."""

    name = "clip"

    def __init__(self, pool: ModelPool, *, complex_prompts: bool = False):
        super().__init__(pool)
        self.complex_prompts = complex_prompts

    @property
    def config(self) -> dict[str, Any]:
        s = self.pool.settings
        cfg: dict[str, Any] = {"clip_model": s.clip_model}
        if self.complex_prompts:
            cfg.update(spacy_model=s.spacy_model, text="prompt without adjectives")
        return cfg

    def models(self):
        clip = self.pool.clip()
        return {self.name: {"model": clip.spec, "weights": clip.weights}}

    def score(self, records, images):
        texts = [scoring.clip_text(r.prompt, self.pool.analyse(r.prompt).tokens if self.complex_prompts else (),
                                   complex_prompt=self.complex_prompts) for r in records]
        cosines = self.pool.clip().cosines(images, texts)
        return [{"score": c, "text": t} for c, t in zip(cosines, texts)]


def _lists_sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


class ThreeInOneScorer(Scorer):
    """Complex: BLIP-VQA (attribute), spatial (complex objects) and CLIP (prompt without adjectives), combined by
    the prompt's type from T2I-CompBench's complex_*_spatial.txt / complex_*_action.txt lists."""

    name = "3-in-1"

    def __init__(self, pool: ModelPool, *, compbench_dir: Path):
        super().__init__(pool)
        self.spatial_keys, self.action_keys = complex_prompt_lists(compbench_dir)
        self.parts = (BlipVqaScorer(pool), SpatialScorer(pool, complex_prompts=True),
                      ClipScorer(pool, complex_prompts=True))

    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        for part in self.parts:
            cfg.update(part.config)
        cfg.update(objects="complex", complex_lists_sha256=_lists_sha256(
            [sorted(self.spatial_keys), sorted(self.action_keys)]))
        return cfg

    def models(self):
        return {k: v for part in self.parts for k, v in part.models().items()}

    def score(self, records, images):
        attribute, spatial, action = (part.score(records, images) for part in self.parts)
        rows = []
        for r, a, s, c in zip(records, attribute, spatial, action):
            kind = scoring.complex_prompt_type(complex_key(r.prompt), self.spatial_keys, self.action_keys)
            rows.append({"score": scoring.three_in_one(kind, a["score"], s["score"], c["score"]),
                         "prompt_type": kind, "attribute": a["score"], "spatial": s["score"], "action": c["score"],
                         "parts": {p.name: row for p, row in zip(self.parts, (a, s, c))}})
        return rows


class NumeracyScorer(Scorer):
    """Numeracy (T2I-CompBench++): detected counts of the prompt's objects against the asked counts."""

    def __init__(self, pool: ModelPool, *, compbench_dir: Path):
        super().__init__(pool)
        path = Path(compbench_dir) / "new_objects.txt"
        if not path.is_file():
            raise UserError(f"{path}: numeracy scoring needs T2I-CompBench's new_objects.txt (its object list); "
                            f"pass --compbench-dir")
        self.pairs = read_object_list(path)
        self.name = f"numeracy-{DetectorSpec.parse(pool.settings.detector).kind}"

    @property
    def config(self) -> dict[str, Any]:
        s = self.pool.settings
        return {"detector": s.detector, "threshold": s.threshold, "spacy_model": s.spacy_model,
                "objects_sha256": _lists_sha256(self.pairs)}

    def models(self):
        det = self.pool.detector()
        return {self.name: {"model": det.spec, "weights": det.weights}}

    def score(self, records, images):
        asked = [scoring.numeracy_objects([t.text for t in self.pool.analyse(r.prompt).tokens], self.pairs)
                 for r in records]
        detections = self.pool.detector().detect(images, [[o.name for o in objs] for objs in asked])
        rows = []
        for objs, dets in zip(asked, detections):
            s = scoring.numeracy_score(objs, dets)
            rows.append({"score": s.score, "objects": [{"name": o.name, "count": o.count} for o in objs],
                         "detected": s.detected})
        return rows


# Category scorer name (prompts.CATEGORIES) -> factory(pool, compbench_dir) -> Scorer.
SCORERS: Registry[Callable[[ModelPool, Path | None], Scorer]] = Registry("T2I-CompBench scorer")


@SCORERS.register("blip-vqa", summary="BLIP-VQA: product of P(yes) for each noun phrase of the prompt",
                  needs_compbench_dir=False)
def _blip_vqa(pool: ModelPool, folder: Path | None) -> Scorer:
    return BlipVqaScorer(pool)


@SCORERS.register("spatial", summary="detected boxes of the two objects and the relation's geometry",
                  needs_compbench_dir=False)
def _spatial(pool: ModelPool, folder: Path | None) -> Scorer:
    return SpatialScorer(pool)


@SCORERS.register("clip", summary="raw CLIP cosine of image and prompt", needs_compbench_dir=False)
def _clip(pool: ModelPool, folder: Path | None) -> Scorer:
    return ClipScorer(pool)


@SCORERS.register("3-in-1", summary="BLIP-VQA, spatial and CLIP, combined by the type of complex prompt",
                  needs_compbench_dir=True)
def _three_in_one(pool: ModelPool, folder: Path | None) -> Scorer:
    return ThreeInOneScorer(pool, compbench_dir=_need(folder, "complex"))


@SCORERS.register("numeracy", summary="detected object counts against the prompt's numbers",
                  needs_compbench_dir=True)
def _numeracy(pool: ModelPool, folder: Path | None) -> Scorer:
    return NumeracyScorer(pool, compbench_dir=_need(folder, "numeracy"))


def _need(folder: Path | None, category: str) -> Path:
    if folder is None or not Path(folder).is_dir():
        raise UserError(f"the {category} category needs T2I-CompBench's dataset folder (its helper lists); "
                        f"pass --compbench-dir (looked in: {folder or 'nowhere: the run names no prompt file'})")
    return Path(folder)
