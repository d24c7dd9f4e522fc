"""sDCI negatives: captions close to an entry's first summary that no longer describe its image.

LLM negatives (DCI appendix A.2), made from the *first* summary of each summarised entry, of three kinds:
``basic`` (mostly the same, changed enough to be another image), ``layout`` (one part changed so that the
structure, layout or content differs) and ``swaps`` (the same words in a new, wrong order). Upstream made 3
of each for the whole image and 1 of each per mask, kept a reply only when its CLIP length was within
[len - 15, len + 50] of the summary's, then reduced it to len + 5 tokens (here also never above the
77-token limit, which upstream checked afterwards). A negative equal to its source after
``replies.normalise_text`` is never kept.

One job per (entry, kind): the kind's negatives are made in order, each later request told the earlier
ones so that greedy decoding gives different texts. Rule-based negatives (``--rules``) come from
``densecaption.generation.rules`` and are stored as kinds ``rule_swap`` and ``rule_replace``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from densecaption.data.schema import BASE_KEY, NEGATIVE_KINDS, DCIImage, mask_key
from densecaption.errors import UserError
from densecaption.generation.jobs import Job, JobFailed
from densecaption.generation.replies import normalise_text, strip_preamble
from densecaption.generation.summaries import Chat, TokenCount, job_id, reduce_to_fit
from densecaption.tokens import CLIP_CONTEXT

PROMPT_VERSION = "1"
RULE_KINDS = {"swap": "rule_swap", "replace": "rule_replace"}
"""Key of ``rule_negatives``'s result -> negative kind in the dataset."""

PROMPTS = {
    "basic": (
        "You will be given the description of a photograph. Write a description that stays mostly the same but "
        "changes enough details that the two could not both describe the same photograph. Keep about the same "
        "length. Reply with the new description only."),
    "layout": (
        "You will be given the description of a photograph. Write a description that stays mostly the same "
        "except for one part, changed so that the arrangement, layout or content of the scene would look "
        "visibly different; the two must not fit the same photograph. Keep about the same length. Reply with "
        "the new description only."),
    "swaps": (
        "You will be given a description. Using only the words it contains, write a new description that puts "
        "those words in a new, nearly random order, so that it no longer matches the original scene. Use as "
        "many of the original words as you can and keep the same length; pair nouns with different adjectives "
        "than before. Reply with the new description only."),
}


@dataclass(frozen=True)
class NegativeConfig:
    """How LLM negatives are made; everything here shapes the output and goes into the job log's header."""

    kinds: tuple[str, ...] = NEGATIVE_KINDS
    n_base: int = 3
    n_mask: int = 1
    tries: int = 4
    """Requests per negative before the job fails (each may also spend ``reduce_tries``)."""
    below: int = 15
    above: int = 50
    """A reply is kept when its CLIP length is within [len - below, len + above] of the summary's."""
    slack: int = 5
    """...and is then reduced to len + slack tokens (never above ``limit``)."""
    limit: int = CLIP_CONTEXT
    reduce_tries: int = 4
    max_tokens: int = 256
    masks: bool = True

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in PROMPTS]
        if unknown or not self.kinds:
            raise UserError(f"--kinds: unknown kind(s) {', '.join(unknown) or '(none given)'} "
                            f"(known: {', '.join(PROMPTS)})")

    def settings(self) -> dict[str, Any]:
        """What shapes each job's output (not which jobs run: ``kinds`` and ``masks`` may change between runs
        into one output, each (entry, kind) being its own job)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("kinds", "masks")}
        return {**fields, "prompts": PROMPT_VERSION}


@dataclass(frozen=True)
class NegativeItem:
    """One (entry, kind): the source summary and how many negatives of the kind it wants."""

    file: str
    key: str
    kind: str
    source: str
    n: int


def sources(record: DCIImage, masks: bool = True) -> list[tuple[str, str]]:
    """(key, first summary) of the record's summarised entries: the whole image, then masks in file order."""
    summaries = record.summaries or {}
    keys = [BASE_KEY] + ([mask_key(i) for i in record.masks] if masks else [])
    return [(k, summaries[k][0]) for k in keys if summaries.get(k) and summaries[k][0].strip()]


def negative_jobs(entries: Iterable[tuple[str, str, str]], config: NegativeConfig) -> list[Job[NegativeItem]]:
    """One job per (entry, kind) of (file, key, first summary) entries, in order."""
    jobs = []
    for file, key, source in entries:
        n = config.n_base if key == BASE_KEY else config.n_mask
        if n <= 0:
            continue
        for kind in config.kinds:
            jobs.append(Job(job_id(file, key, kind), NegativeItem(file, key, kind, source, n)))
    return jobs


def negative_message(source: str, earlier: list[str], rejected: str | None = None) -> str:
    """The user message: the source, the negatives already made (write another), and why the last reply
    was turned down, so that a retry under greedy decoding is a different request."""
    message = source
    if earlier:
        message += "\n\n(Already written for this description, so write a different one: " + " | ".join(earlier) + ")"
    if rejected:
        message += f"\n\n(Your last answer was not usable: {rejected}. Keep about {len(source.split())} words.)"
    return message


FEEDBACK = {"empty": "it was empty", "unchanged": "it did not change the description",
            "repeated": "it repeated an earlier one"}


@dataclass
class _Screen:
    """Why candidates were turned down, for the failure reason."""

    counts: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        return ", ".join(f"{reason} x{n}" for reason, n in self.counts.most_common())


def make_negatives(item: NegativeItem, chat: Chat, config: NegativeConfig, count: TokenCount) -> list[str]:
    """``item.n`` negatives of ``item.kind`` for ``item.source`` (see the module docstring).

    Raises ``JobFailed``, saying why the candidates were turned down, when a negative finds no valid
    candidate within ``config.tries`` requests.
    """
    length = count(item.source)
    source_key = normalise_text(item.source)
    target = min(length + config.slack, config.limit)
    made: list[str] = []
    screen = _Screen()
    for index in range(item.n):
        reason = None
        for _ in range(config.tries):
            feedback = None if reason is None else FEEDBACK.get(reason, f"its length was wrong ({reason})")
            reply = chat.ask(PROMPTS[item.kind], negative_message(item.source, made, feedback),
                             max_tokens=config.max_tokens)
            candidate = strip_preamble(reply)
            reason = _turn_down(candidate, source_key, made, length, count(candidate) if candidate else 0, config)
            if reason is None:
                try:
                    candidate = reduce_to_fit(chat, candidate, target, count, tries=config.reduce_tries,
                                              max_tokens=config.max_tokens)
                except JobFailed:
                    reason = f"still over {target} tokens after reducing"
                else:
                    reason = _turn_down(candidate, source_key, made, length, count(candidate), config, window=False)
            if reason is None:
                made.append(candidate)
                break
            screen.counts[reason] += 1
        else:
            raise JobFailed(f"{item.kind} negative {index + 1} of {item.n}: no valid one in {config.tries} "
                            f"tries ({screen})")
    return made


def _turn_down(candidate: str, source_key: str, made: list[str], source_length: int, length: int,
               config: NegativeConfig, *, window: bool = True) -> str | None:
    if not candidate:
        return "empty"
    key = normalise_text(candidate)
    if key == source_key:
        return "unchanged"
    if any(key == normalise_text(m) for m in made):
        return "repeated"
    if window and not (source_length - config.below <= length <= source_length + config.above):
        return f"length outside [{source_length - config.below}, {source_length + config.above}]"
    if not window and length > config.limit:
        return f"over {config.limit} tokens"
    return None


def check_negatives(config: NegativeConfig, count: TokenCount) -> Callable[[NegativeItem, Any], str | None]:
    """The job check: ``n`` non-empty, distinct negatives, none equal to the source, each fitting the limit."""

    def check(item: NegativeItem, output: Any) -> str | None:
        if not isinstance(output, list) or not all(isinstance(s, str) for s in output):
            return "output is not a list of negatives"
        if len(output) != item.n:
            return f"{len(output)} negatives instead of {item.n}"
        keys = [normalise_text(s) for s in output]
        if not all(keys):
            return "an empty negative"
        if normalise_text(item.source) in keys:
            return "a negative unchanged from its summary"
        if len(set(keys)) != len(keys):
            return "repeated negatives"
        if any(count(s) > config.limit for s in output):
            return f"a negative over {config.limit} CLIP tokens"
        return None

    return check


# --------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class RuleProblem:
    file: str
    key: str
    kind: str
    reason: str


def rule_negatives_for(entries: list[tuple[str, str, str]], *, seed: int, count: TokenCount,
                       limit: int = CLIP_CONTEXT, **rule_options: Any
                       ) -> tuple[dict[tuple[str, str], dict[str, list[str]]], list[RuleProblem]]:
    """Rule-based negatives of (file, key, first summary) entries: ``{(file, key): {kind: [text]}}`` and
    the entries for which a kind could not be made (none possible, unchanged, or too long).

    ``rule_options`` (``spacy_model``, ``wordnet_dir``) go to ``rules.rule_negatives`` as they are."""
    try:
        from densecaption.generation.rules import rule_negatives
    except ImportError as e:
        raise UserError(f"--rules needs densecaption.generation.rules, which does not import here ({e})") from e
    texts = [text for _, _, text in entries]
    results = rule_negatives(texts, seed=seed, **rule_options) if texts else []
    if len(results) != len(texts):
        raise RuntimeError(f"rule_negatives returned {len(results)} results for {len(texts)} texts")
    made: dict[tuple[str, str], dict[str, list[str]]] = {}
    problems: list[RuleProblem] = []
    for (file, key, text), result in zip(entries, results):
        for name, kind in RULE_KINDS.items():
            negative = (result or {}).get(name)
            if not negative or not negative.strip():
                reason = "none could be made"
            elif normalise_text(negative) == normalise_text(text):
                reason = "unchanged after normalisation"
            elif count(negative) > limit:
                reason = f"over {limit} CLIP tokens"
            else:
                made.setdefault((file, key), {})[kind] = [negative]
                continue
            problems.append(RuleProblem(file, key, kind, reason))
    return made, problems


def with_negatives(record: DCIImage, llm: Mapping[tuple[str, str], list[str]], llm_kinds: Iterable[str],
                   rules: Mapping[str, dict[str, list[str]]] | None, keys: Iterable[str]) -> DCIImage:
    """The record with the regenerated kinds replaced for ``keys``.

    ``llm`` maps (key, kind) to the new negatives (a failed job has none, and the kind is then absent, never
    left stale); ``rules`` maps key to rule kinds (None: rules were not asked for, existing ones kept).
    Other kinds stay. clip_scores scored the old negatives, so a record whose negatives change loses them.
    """
    llm_kinds = list(llm_kinds)
    replaced = set(llm_kinds) | (set(RULE_KINDS.values()) if rules is not None else set())
    negatives = {k: dict(v) for k, v in (record.negatives or {}).items()}
    for key in keys:
        kinds = {kind: texts for kind, texts in negatives.get(key, {}).items() if kind not in replaced}
        for kind in llm_kinds:
            if (key, kind) in llm:
                kinds[kind] = list(llm[(key, kind)])
        if rules is not None:
            kinds.update({kind: list(texts) for kind, texts in rules.get(key, {}).items()})
        if kinds:
            negatives[key] = kinds
        else:
            negatives.pop(key, None)
    changed = negatives != (record.negatives or {})
    return dataclasses.replace(record, negatives=negatives or None,
                               clip_scores=None if changed else record.clip_scores)
