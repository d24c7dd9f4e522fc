"""Caption precision: a modified FaithScore (Captions4T2I section 4; FaithScore, Jing et al. 2023).

Per caption, three steps:

1. split the caption into sub-sentences (at ``. , ; ! ?`` and line breaks, not inside numbers such as
   3.5, as FaithScore's human stage-1 labels are split) and ask the LLM to label each DESCRIPTIVE (says
   something that can be seen) or ANALYTICAL (interprets, infers, judges); only descriptive ones go on;
2. ask the LLM to break each descriptive sub-sentence (with the whole caption as context, to resolve "it")
   into atomic facts, one per line, each tagged with a category of ``CATEGORIES`` (T2I-CompBench's, as the
   paper modified FaithScore); every fact stays linked to the sub-sentence it came from;
3. ask the VLM, with the image, ``VERIFY`` about each fact (greedy decoding); a fact passes when the answer
   says yes (an answer that says neither yes nor no does not pass, and is counted as unclear).

Scores (``aggregate``): instance level, the mean over captions of verified facts / facts; sentence level, the
mean over captions of the share of descriptive sub-sentences with no failed fact linked to them; precision
per category, pooled over all facts. A caption with no facts has neither score: it is listed and left out of
the means (``no_facts="skip"``), or scored 0 on both as upstream did (``no_facts="zero"``).
Scoring is pure (``caption_scores``, ``aggregate``) and separate from the model calls (``precision_work``).
"""

from __future__ import annotations

import hashlib
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from densecaption.generation.backends import TextBackend
from densecaption.generation.jobs import Job, JobContext, JobFailed
from densecaption.generation.replies import _POSTAMBLE, clean_line, normalise_text
from densecaption.quality.captions import CaptionRecord

CATEGORIES = ("ENTITY", "SHAPE", "COLOR", "TEXTURE", "SPATIAL", "NON-SPATIAL", "OTHER")
PROMPT_VERSION = "1"
"""Bumped whenever a prompt below changes, so a job log of old prompts is not resumed with new ones."""
NoFacts = Literal["skip", "zero"]

CLASSIFY = (
    "You will be given a description of an image, split into numbered sub-sentences. Label each sub-sentence "
    "DESCRIPTIVE if it states something that can be seen in the image (objects, their attributes, counts, "
    "positions or actions), or ANALYTICAL if it interprets, infers, speculates, judges or explains (for "
    "example \"which suggests that they are friends\", \"creating a cozy atmosphere\", \"likely for a "
    "party\"). Reply with one line per sub-sentence and nothing else, in the form:\n"
    "1. DESCRIPTIVE\n2. ANALYTICAL\n...")
DECOMPOSE = (
    "You will be given a description of an image and one part of it. Break that part into atomic facts: "
    "short, simple sentences that each state one thing about the image. Tag each fact with one category: "
    "ENTITY (something exists: \"There is a dog.\"), COLOR, SHAPE, TEXTURE (surface or material), SPATIAL "
    "(where things are, relative to each other or to the image), NON-SPATIAL (other relations and actions: "
    "\"The man holds a cup.\"), OTHER (counts and any other attribute). Use the rest of the description only "
    "to tell what words such as \"it\" or \"they\" refer to. Reply with one fact per line and nothing else, "
    "in the form:\n[CATEGORY] fact\nIf the part states nothing that can be seen, reply NONE.")
VERIFY = "Statement: {fact} Is this statement right according to the image? Please answer yes or no."

# ------------------------------------------------------------------------------------------ sub-sentences
_SPLIT = re.compile(r"(?<!\d)[.,;!?](?!\d)|(?<=\d)[.,;!?](?!\d)|(?<!\d)[.,;!?](?=\d)|\n")


def split_subsentences(text: str) -> list[str]:
    """The caption's sub-sentences: cut at ``. , ; ! ?`` and line breaks (a point or comma between two
    digits, as in 3.5 or 1,000, does not cut), stripped, empty ones dropped."""
    return [p.strip() for p in _SPLIT.split(text) if p.strip() and any(c.isalnum() for c in p)]


# ------------------------------------------------------------------------------------------ reply parsing
_LABEL_WORD = re.compile(r"\b(descriptive|analytical|analytic)\b", re.I)
_LETTER = re.compile(r"^[\W_]*([da])[\W_]*$", re.I)
_NUMBERED = re.compile(r"^\W*?(\d{1,3})\s*(?:[.):\]-]|\*\*)+\s*(.*)$")


def _label_of(text: str) -> bool | None:
    """True (descriptive), False (analytical) or None: the first label word in ``text``, or a lone letter
    D or A ("[D]", "(a)")."""
    match = _LABEL_WORD.search(text)
    if match is not None:
        return match.group(1).lower().startswith("d")
    letter = _LETTER.match(text.strip())
    return None if letter is None else letter.group(1).lower() == "d"


def parse_labels(reply: str, n: int) -> list[bool | None]:
    """Labels of ``n`` numbered sub-sentences from a reply ("1. DESCRIPTIVE", "2: [A]", "**3.** analytical
    - because ..."); when the reply has no numbers but exactly ``n`` label lines, they go in order, and for a
    single sub-sentence the first label word of the reply counts. None where no label was found."""
    labels: list[bool | None] = [None] * n
    numbered = False
    plain: list[bool] = []
    for raw in reply.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _NUMBERED.match(line)
        if match and 1 <= int(match.group(1)) <= n:
            numbered = True
            label = _label_of(match.group(2))
            if label is not None and labels[int(match.group(1)) - 1] is None:
                labels[int(match.group(1)) - 1] = label
            continue
        label = _label_of(line) if len(line.split()) <= 3 else None
        if label is not None:
            plain.append(label)
    if not numbered and len(plain) == n:
        return list(plain)
    if not numbered and n == 1:
        return [_label_of(reply)]
    return labels


_TAG_WORDS = (r"entity|entities|object|objects|existence|shape|colou?r|texture|material|non[- _]?spatial|"
              r"spatial|relation|action|count(?:ing)?|number|attribute|other")
_TAG = rf"(?P<tag>{_TAG_WORDS})"
_FACT_FORMS = [
    re.compile(rf"^[\[(<]\s*{_TAG}\s*[\])>]\s*[:\-\u2013|]?\s*(?P<fact>.+)$", re.I),  # [COLOR] fact
    re.compile(rf"^{_TAG}\s*[:|]\s*(?P<fact>.+)$", re.I),  # COLOR: fact
    re.compile(rf"^{_TAG}\s+[-\u2013]\s+(?P<fact>.+)$", re.I),  # COLOR - fact
    re.compile(rf"^(?P<fact>.+?)\s*[:\-\u2013|]?\s*[\[(<]\s*{_TAG}\s*[\])>]\s*\.?$", re.I),  # fact [COLOR]
    re.compile(rf"^(?P<fact>.+?)\s+(?:[-\u2013|]|--)\s*{_TAG}\s*\.?$", re.I),  # fact - COLOR
]
_NONE = re.compile(r"^(none|n/a|no (atomic )?facts?\b.*|nothing\b.*)\.?$", re.I)


def normalise_category(tag: str) -> str:
    word = re.sub(r"[^a-z]", "", tag.lower())
    if word in ("entity", "entities", "object", "objects", "existence"):
        return "ENTITY"
    if word in ("color", "colour"):
        return "COLOR"
    if word == "shape":
        return "SHAPE"
    if word in ("texture", "material"):
        return "TEXTURE"
    if word == "spatial":
        return "SPATIAL"
    if word in ("nonspatial", "relation", "action"):
        return "NON-SPATIAL"
    return "OTHER"


@dataclass(frozen=True)
class ParsedFact:
    text: str
    category: str
    tagged: bool
    """False when the line carried no category (it is then OTHER)."""


def parse_facts(reply: str) -> list[ParsedFact]:
    """Atomic facts from an LLM reply, one per line, robust to list markers, markdown, preambles ("Here are
    the atomic facts:"), closing remarks, tags before or after the fact in brackets or with a colon, and
    "NONE". Repeated facts (same words, any case) are kept once."""
    facts: list[ParsedFact] = []
    seen: set[str] = set()
    for raw in reply.splitlines():
        line = clean_line(raw.replace("**", "").replace("`", ""))
        if not line or line.endswith(":") or _POSTAMBLE.match(line) or _NONE.match(line):
            continue
        if re.match(r"^(here (is|are)|sure\b|certainly\b|okay\b|atomic facts\b|facts\b)", line, re.I) \
                and len(line.split()) <= 12 and not re.search(r"\[(" + _TAG_WORDS + r")\]", line, re.I):
            continue
        text, category, tagged = line, "OTHER", False
        for form in _FACT_FORMS:
            match = form.match(line)
            if match:
                text, category, tagged = match.group("fact").strip(), normalise_category(match.group("tag")), True
                break
        text = clean_line(text).strip()
        if not text or _NONE.match(text) or not any(c.isalpha() for c in text):
            continue
        key = normalise_text(text)
        if key in seen:
            continue
        seen.add(key)
        facts.append(ParsedFact(text, category, tagged))
    return facts


_YES_NO = re.compile(r"\b(yes|no)\b", re.I)


def parse_verdict(reply: str) -> str:
    """``"yes"``, ``"no"`` or ``"unclear"``: the first yes or no word of the VLM's answer."""
    match = _YES_NO.search(reply)
    return match.group(1).lower() if match else "unclear"


# ------------------------------------------------------------------------------------------ the pipeline
@dataclass(frozen=True)
class PrecisionItem:
    id: str
    text: str
    image: str | None
    """Path of the image file (None: the caption names no image)."""


@dataclass(frozen=True)
class PrecisionConfig:
    classify_max_tokens: int = 512
    decompose_max_tokens: int = 512
    verify_max_tokens: int = 16

    def settings(self) -> dict[str, Any]:
        return {"classify_max_tokens": self.classify_max_tokens, "decompose_max_tokens": self.decompose_max_tokens,
                "verify_max_tokens": self.verify_max_tokens, "prompts": PROMPT_VERSION}


def job_id(caption_id: str, text: str) -> str:
    """The job of a caption: its id and a hash of its text, so an edited caption is measured again."""
    return f"{caption_id}#{hashlib.sha256(text.encode('utf-8')).hexdigest()[:10]}"


def precision_jobs(records: Sequence[CaptionRecord], images: Path) -> list[Job[PrecisionItem]]:
    """One job per caption, its image found under ``images`` by any of the names its line gives."""
    paths = [r.image_path(images) for r in records]
    return [Job(job_id(r.id, r.text), PrecisionItem(r.id, r.text, None if path is None else str(path)))
            for r, path in zip(records, paths)]


def classify_prompt(text: str, subs: Sequence[str]) -> str:
    return f"Description: {text}\n\nSub-sentences:\n" + "\n".join(f"{i + 1}. {s}" for i, s in enumerate(subs))


def decompose_prompt(text: str, sub: str) -> str:
    return f"Description: {text}\n\nPart: {sub}"


def precision_work(llm: TextBackend, vlm: TextBackend, config: PrecisionConfig = PrecisionConfig()
                   ) -> Callable[[PrecisionItem, JobContext], dict[str, Any]]:
    """The work of one caption: the three steps, returning its outcome (``caption_scores`` reads it)."""

    def ask(ctx: JobContext, system: str, user: str, max_tokens: int) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return ctx.call(llm.generate, messages, max_tokens=max_tokens, seed=ctx.next_seed())

    def work(item: PrecisionItem, ctx: JobContext) -> dict[str, Any]:
        if item.image is None:
            raise JobFailed("the caption's line names no image (a 'file', 'file_name' or 'image' field)")
        if not Path(item.image).is_file():
            raise JobFailed(f"no image file {item.image}")
        subs = split_subsentences(item.text)
        labels: list[bool | None] = []
        replies: list[str] = []
        if subs:
            reply = ask(ctx, CLASSIFY, classify_prompt(item.text, subs), config.classify_max_tokens)
            labels = parse_labels(reply, len(subs))
            replies.append(" ".join(reply.split())[:500])
            missing = [i + 1 for i, label in enumerate(labels) if label is None]
            if missing:
                raise JobFailed(f"the LLM labelled no sub-sentence {missing} as descriptive or analytical: "
                                f"{' '.join(reply.split())[:160]!r}")
        facts: list[dict[str, Any]] = []
        for index, (sub, descriptive) in enumerate(zip(subs, labels)):
            if not descriptive:
                continue
            reply = ask(ctx, DECOMPOSE, decompose_prompt(item.text, sub), config.decompose_max_tokens)
            replies.append(reply.strip()[:1000])
            for fact in parse_facts(reply):
                facts.append({"text": fact.text, "category": fact.category, "tagged": fact.tagged, "sub": index})
        for fact in facts:
            answer = ctx.call(vlm.generate, VERIFY.format(fact=fact["text"]), max_tokens=config.verify_max_tokens,
                              images=[item.image], seed=ctx.next_seed())
            fact["answer"] = " ".join(answer.split())[:200]
            fact["verdict"] = parse_verdict(answer)
            fact["verified"] = fact["verdict"] == "yes"
        return {"caption": item.text,
                "subsentences": [{"text": s, "descriptive": bool(d)} for s, d in zip(subs, labels)],
                "facts": facts, "llm_replies": replies}

    return work


def check_outcome(item: PrecisionItem, output: Any) -> str | None:
    if not isinstance(output, dict) or not isinstance(output.get("facts"), list):
        return "no outcome"
    return None


# ------------------------------------------------------------------------------------------ scoring (pure)
def caption_scores(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """One caption's counts and scores from its outcome: ``subsentences`` (``descriptive``) and ``facts``
    (``verified``, ``category``, ``sub``: the index of the sub-sentence it came from, or None if unknown).

    ``instance`` = verified / facts; ``sentence`` = descriptive sub-sentences with no failed fact linked /
    descriptive sub-sentences (a sub-sentence that gave no fact has none failed). Both None with no facts.
    """
    facts = list(outcome.get("facts") or [])
    subs = list(outcome.get("subsentences") or [])
    descriptive = [i for i, s in enumerate(subs) if s.get("descriptive")]
    failed_subs = {f.get("sub") for f in facts if not f.get("verified")}
    verified = sum(1 for f in facts if f.get("verified"))
    clean = sum(1 for i in descriptive if i not in failed_subs)
    has_facts = bool(facts)
    return {"subsentences": len(subs), "descriptive": len(descriptive), "facts": len(facts), "verified": verified,
            "unclear": sum(1 for f in facts if f.get("verdict") == "unclear"),
            "instance": verified / len(facts) if has_facts else None,
            "sentence": clean / len(descriptive) if has_facts and descriptive else None}


def aggregate(outcomes: Mapping[str, Mapping[str, Any]], *, no_facts: NoFacts = "skip") -> dict[str, Any]:
    """Scores over captions (``{caption id: outcome}``); see the module docstring. ``no_facts``: ``skip``
    leaves captions without facts out of the means (and lists them), ``zero`` scores them 0 (upstream)."""
    if no_facts not in ("skip", "zero"):
        raise ValueError(f"no_facts should be 'skip' or 'zero', not {no_facts!r}")
    per_caption = {cid: caption_scores(o) for cid, o in outcomes.items()}
    instance: list[float] = []
    sentence: list[float] = []
    without = [cid for cid, s in per_caption.items() if s["facts"] == 0]
    for cid, s in per_caption.items():
        if s["facts"] == 0:
            if no_facts == "zero":
                instance.append(0.0)
                sentence.append(0.0)
            continue
        instance.append(s["instance"])
        if s["sentence"] is not None:
            sentence.append(s["sentence"])
    categories: dict[str, dict[str, Any]] = {}
    for cat in CATEGORIES:
        facts = [f for o in outcomes.values() for f in o.get("facts") or [] if f.get("category") == cat]
        ok = sum(1 for f in facts if f.get("verified"))
        categories[cat] = {"facts": len(facts), "verified": ok, "precision": ok / len(facts) if facts else None}
    all_facts = [f for o in outcomes.values() for f in o.get("facts") or []]
    return {
        "captions": len(per_caption),
        "scored": len(instance),
        "no_facts": no_facts,
        "captions_without_facts": without,
        "instance": statistics.fmean(instance) if instance else None,
        "instance_std": statistics.pstdev(instance) if instance else None,
        "sentence": statistics.fmean(sentence) if sentence else None,
        "facts": len(all_facts),
        "verified": sum(1 for f in all_facts if f.get("verified")),
        "unclear_answers": sum(1 for f in all_facts if f.get("verdict") == "unclear"),
        "untagged_facts": sum(1 for f in all_facts if f.get("tagged") is False),
        "facts_per_caption": len(all_facts) / len(per_caption) if per_caption else None,
        "per_category": categories,
        "per_caption": per_caption,
    }
