"""sDCI negatives: captions close to an entry's first summary that no longer describe its image.

LLM negatives (DCI appendix A.2), made from the *first* summary of each summarised entry, of three kinds:
``basic`` (mostly the same, changed enough to be another image), ``layout`` (one part changed so that the
structure, layout or content differs) and ``swaps`` (the same words in a new, wrong order). Upstream made 3
of each for the whole image and 1 of each per mask, kept a reply only when its CLIP length was within
[len - 15, len + 50] of the summary's, then reduced it to len + 5 tokens (here also never above the
77-token limit, which upstream checked afterwards). A negative equal to its source after
``replies.normalise_text`` is never kept.

A reply must also mean what its kind means (``meaning_problem``, on spaCy content words): no negative equals
or is contained in a summary of its entry; ``swaps`` uses exactly the summary's content words, in another
order and with other pairings; ``basic`` and ``layout`` bring at least one content word or spatial word the
summary lacks (a reply that only drops or reorders the summary's words is still true of the photo). A
turned-down reply is asked again, within ``tries``.

One job per (entry, kind): the kind's negatives are made in order, each later request told the earlier
ones so that greedy decoding gives different texts. The templates are ``TEMPLATES`` or a ``--prompts`` file's
(``generation.prompts``). Rule-based negatives (``--rules``) come from ``densecaption.generation.rules``,
``n_base``/``n_mask`` of each per entry, and are stored as kinds ``rule_swap`` and ``rule_replace``.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from densecaption.data.schema import BASE_KEY, NEGATIVE_KINDS, DCIImage, mask_key
from densecaption.errors import UserError
from densecaption.generation.jobs import Job, JobFailed
from densecaption.generation.prompts import PromptSet
from densecaption.generation.replies import normalise_text, strip_preamble
from densecaption.generation.summaries import SHORTEN_A_LITTLE, SHORTEN_MORE, Chat, TokenCount, job_id, reduce_to_fit
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
TEMPLATES = {**PROMPTS, "shorten_a_little": SHORTEN_A_LITTLE, "shorten_more": SHORTEN_MORE}
"""The built-in templates by name (the names a ``--prompts`` file may set; the reduce loop's too)."""


def builtin_prompts() -> PromptSet:
    """The built-in negative templates, as a run records them."""
    return PromptSet(TEMPLATES, PROMPT_VERSION)


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
    meaning: bool = True
    """Turn down replies that do not mean what their kind means (``meaning_problem``)."""
    prompts: PromptSet = field(default_factory=builtin_prompts)
    """The templates (built-in, or a ``--prompts`` file's); recorded in the job log's header."""

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in PROMPTS]
        if unknown or not self.kinds:
            raise UserError(f"--kinds: unknown kind(s) {', '.join(unknown) or '(none given)'} "
                            f"(known: {', '.join(PROMPTS)})")

    def settings(self) -> dict[str, Any]:
        """What shapes each job's output (not which jobs run: ``kinds`` and ``masks`` may change between runs
        into one output, each (entry, kind) being its own job)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("kinds", "masks", "prompts")}
        return {**fields, "prompts": self.prompts.manifest()}


@dataclass(frozen=True)
class NegativeItem:
    """One (entry, kind): the source summary, how many negatives of the kind it wants, and all the entry's
    summaries (none of which a negative may restate)."""

    file: str
    key: str
    kind: str
    source: str
    n: int
    summaries: tuple[str, ...] = ()


def sources(record: DCIImage, masks: bool = True) -> list[tuple[str, str]]:
    """(key, first summary) of the record's summarised entries: the whole image, then masks in file order."""
    summaries = record.summaries or {}
    keys = [BASE_KEY] + ([mask_key(i) for i in record.masks] if masks else [])
    return [(k, summaries[k][0]) for k in keys if summaries.get(k) and summaries[k][0].strip()]


def all_summaries(record: DCIImage, masks: bool = True) -> dict[tuple[str, str], tuple[str, ...]]:
    """(file, key) -> every summary of the entries ``sources`` gives, for the restatement check."""
    summaries = record.summaries or {}
    return {(record.file, key): tuple(summaries.get(key) or ()) for key, _ in sources(record, masks)}


def negative_jobs(entries: Iterable[tuple[str, str, str]], config: NegativeConfig,
                  summaries: Mapping[tuple[str, str], Sequence[str]] | None = None) -> list[Job[NegativeItem]]:
    """One job per (entry, kind) of (file, key, first summary) entries, in order; ``summaries`` maps
    (file, key) to all the entry's summaries (default: the first one only)."""
    jobs = []
    for file, key, source in entries:
        n = config.n_base if key == BASE_KEY else config.n_mask
        if n <= 0:
            continue
        known = tuple((summaries or {}).get((file, key)) or (source,))
        for kind in config.kinds:
            jobs.append(Job(job_id(file, key, kind), NegativeItem(file, key, kind, source, n, known)))
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
            "repeated": "it repeated an earlier one",
            "restates a summary": "it repeated or shortened a true description of the photograph",
            "not the summary's words": "use exactly the content words of the description, no more and no fewer",
            "same order as the summary": "it kept the words in their order",
            "same pairings as the summary": "every word kept its partner; pair nouns with other adjectives",
            "only drops or reorders the summary's words": "leaving words out or moving them keeps it true of the "
                                                          "photograph; change a detail instead"}
"""Reason a reply was turned down -> what the next request tells the model (a length reason otherwise)."""


@dataclass
class _Screen:
    """Why candidates were turned down, for the failure reason."""

    counts: Counter = field(default_factory=Counter)

    def __str__(self) -> str:
        return ", ".join(f"{reason} x{n}" for reason, n in self.counts.most_common())


def make_negatives(item: NegativeItem, chat: Chat, config: NegativeConfig, count: TokenCount,
                   analyse: Callable[[str], "Analysis"] | None = None) -> list[str]:
    """``item.n`` negatives of ``item.kind`` for ``item.source`` (see the module docstring).

    ``analyse`` reads a text for the meaning check (default: a shared ``Analyser`` of the default spaCy
    model). Raises ``JobFailed``, saying why the candidates were turned down, when a negative finds no valid
    candidate within ``config.tries`` requests.
    """
    length = count(item.source)
    source_key = normalise_text(item.source)
    target = min(length + config.slack, config.limit)
    meaning = _meaning_check(item, config, analyse)
    made: list[str] = []
    screen = _Screen()
    for index in range(item.n):
        reason = None
        for _ in range(config.tries):
            feedback = None if reason is None else FEEDBACK.get(reason, f"its length was wrong ({reason})")
            reply = chat.ask(config.prompts[item.kind], negative_message(item.source, made, feedback),
                             max_tokens=config.max_tokens)
            candidate = strip_preamble(reply)
            reason = (_turn_down(candidate, source_key, made, length, count(candidate) if candidate else 0, config,
                                 item.summaries) or meaning(candidate))
            if reason is None:
                try:
                    reduced = reduce_to_fit(chat, candidate, target, count, tries=config.reduce_tries,
                                            max_tokens=config.max_tokens, prompts=config.prompts)
                except JobFailed:
                    reason = f"still over {target} tokens after reducing"
                else:
                    reason = _turn_down(reduced, source_key, made, length, count(reduced), config, item.summaries,
                                        window=False) or (meaning(reduced) if reduced != candidate else None)
                    candidate = reduced
            if reason is None:
                made.append(candidate)
                break
            screen.counts[reason] += 1
        else:
            raise JobFailed(f"{item.kind} negative {index + 1} of {item.n}: no valid one in {config.tries} "
                            f"tries ({screen})")
    return made


def _meaning_check(item: NegativeItem, config: NegativeConfig,
                   analyse: Callable[[str], "Analysis"] | None) -> Callable[[str], str | None]:
    """``meaning_problem`` of a candidate for the item's kind (nothing when ``config.meaning`` is off)."""
    if not config.meaning:
        return lambda text: None
    read = analyse or default_analyser()
    source = read(item.source)
    return lambda text: meaning_problem(item.kind, read(text), source, item.summaries)


def _turn_down(candidate: str, source_key: str, made: list[str], source_length: int, length: int,
               config: NegativeConfig, summaries: Sequence[str] = (), *, window: bool = True) -> str | None:
    if not candidate:
        return "empty"
    key = normalise_text(candidate)
    if key == source_key:
        return "unchanged"
    if any(key == normalise_text(m) for m in made):
        return "repeated"
    if restates(candidate, summaries):
        return "restates a summary"
    if window and not (source_length - config.below <= length <= source_length + config.above):
        return f"length outside [{source_length - config.below}, {source_length + config.above}]"
    if not window and length > config.limit:
        return f"over {config.limit} tokens"
    return None


def check_negatives(config: NegativeConfig, count: TokenCount) -> Callable[[NegativeItem, Any], str | None]:
    """The job check: ``n`` non-empty, distinct negatives, none equal to the source or restating a summary of
    the entry, each fitting the limit."""

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
        if any(restates(s, item.summaries) for s in output):
            return "a negative restating a summary"
        if len(set(keys)) != len(keys):
            return "repeated negatives"
        if any(count(s) > config.limit for s in output):
            return f"a negative over {config.limit} CLIP tokens"
        return None

    return check


# --------------------------------------------------------------------------------------------- meaning
CONTENT_POS = frozenset({"NOUN", "VERB", "ADJ", "NUM", "PROPN"})
"""Parts of speech (spaCy's universal tags) whose words carry what a description says."""
SPATIAL_WORDS = frozenset({
    "above", "below", "under", "underneath", "beneath", "over", "behind", "beside", "besides", "near", "nearby",
    "inside", "outside", "within", "between", "among", "amid", "atop", "on", "onto", "in", "into", "across",
    "along", "around", "through", "against", "toward", "towards", "beyond", "upon", "off", "opposite", "next",
    "left", "right", "top", "bottom", "front", "back", "middle", "center", "centre", "foreground",
    "background", "upside", "down", "up", "far", "close", "upstairs", "downstairs", "indoors", "outdoors"})
"""Words of place: a ``layout`` negative may change only where they put things ("a cup on the table" -> "under
the table", "the flag on the left" -> "on the right")."""


@dataclass(frozen=True)
class Word:
    """One word of a text (letters or digits in it), lower case, with its lemma and whether it is content."""

    text: str
    lemma: str
    content: bool


@dataclass(frozen=True)
class Analysis:
    """A text as the meaning check reads it: its words, and the pairs its content words form."""

    text: str
    words: tuple[Word, ...]
    pairs: frozenset[tuple[str, str, str]]
    """(word, relation, head): each content word and its nearest content ancestor in the parse, the relation
    naming the function words between them ("table", "pobj/on", "cup"); a lemma met more than once is
    numbered in order ("tower#2"), so that which tower is tall still counts."""
    places: tuple[tuple[str, str, str], ...] = ()
    """(spatial word, its object, what it places), in text order: "a flag hangs on the left" gives ("on",
    "left", "flag")."""
    place_words: tuple[str, ...] = ()
    """The spatial words in text order, read from the words alone (a shorter text changes the parse, not the
    order of what is left): "a flag on the left, a model on the right" gives ("on", "left", "on", "right")."""


def analysis_of(doc: Any) -> Analysis:
    """The ``Analysis`` of a parsed spaCy ``Doc``."""
    words = tuple(Word(_bare(t.lower_), _bare(t.lemma_.lower()), t.pos_ in CONTENT_POS) for t in doc if _is_word(t))
    names = _numbered_lemmas(doc)
    pairs = frozenset(_pair(t, names) for t in doc if t.i in names)
    spatial = [t for t in doc if t.lower_ in SPATIAL_WORDS]
    places = tuple((t.lower_, next((_bare(c.lemma_.lower()) for c in t.children if c.dep_ == "pobj"), ""), _anchor(t))
                   for t in spatial if not (t.dep_ == "pobj" and t.head.lower_ in SPATIAL_WORDS))
    place_words = tuple(t.lower_ for t in spatial)
    return Analysis(doc.text, words, pairs, places, place_words)


def _is_word(token: Any) -> bool:
    return any(c.isalnum() for c in token.text)


def _bare(word: str) -> str:
    """A word without the punctuation spaCy may leave on it ("-man")."""
    return normalise_text(word).replace(" ", "") or word



def _numbered_lemmas(doc: Any) -> dict[int, str]:
    """Token index -> lemma of each content word, numbered in order when the lemma is met again."""
    content = [t for t in doc if t.pos_ in CONTENT_POS and _is_word(t)]
    totals = Counter(t.lemma_.lower() for t in content)
    seen: Counter = Counter()
    names = {}
    for t in content:
        lemma = t.lemma_.lower()
        seen[lemma] += 1
        names[t.i] = f"{lemma}#{seen[lemma]}" if totals[lemma] > 1 else lemma
    return names


def _pair(token: Any, names: dict[int, str]) -> tuple[str, str, str]:
    relation, node = [token.dep_], token
    while node.head.i != node.i:
        node = node.head
        if node.i in names:
            return names[token.i], "/".join(relation), names[node.i]
        relation.append(node.lower_)
    return names[token.i], "/".join(relation), ""


def _anchor(token: Any) -> str:
    """What a place word places: the lemma of the nearest noun above it in the parse, or the subject of the
    nearest verb with one ("a flag hangs on the left": flag); "" when none."""
    node = token
    while node.head.i != node.i:
        node = node.head
        if node.pos_ in ("NOUN", "PROPN", "PRON"):
            return node.lemma_.lower()
        subject = next((c for c in node.children if c.dep_ in ("nsubj", "nsubjpass")), None)
        if subject is not None:
            return subject.lemma_.lower()
    return ""


class Analyser:
    """Reads texts into ``Analysis`` with a spaCy pipeline loaded on first use (default: the official
    ``en_core_web_sm``, else its PyPI mirror, as ``rules`` loads it). One text at a time, so the job runner's
    threads can share it; recent texts are cached (each source is read by every kind's job)."""

    def __init__(self, spacy_model: str | None = None, cache_size: int = 4096) -> None:
        self.spacy_model = spacy_model
        self.cache_size = cache_size
        self._nlp: Any = None
        self._cache: dict[str, Analysis] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str) -> Analysis:
        with self._lock:
            found = self._cache.get(text)
            if found is None:
                if self._nlp is None:
                    from densecaption.language import DEFAULT_SPACY_MODEL, load_spacy

                    self._nlp, _ = load_spacy(self.spacy_model or DEFAULT_SPACY_MODEL)
                if len(self._cache) >= self.cache_size:
                    self._cache.clear()
                found = self._cache[text] = analysis_of(self._nlp(text))
            return found


@functools.lru_cache(maxsize=None)
def default_analyser() -> Analyser:
    """One shared ``Analyser`` of the default spaCy model (created on first use, loaded on first text)."""
    return Analyser()


def restates(text: str, summaries: Sequence[str]) -> bool:
    """Whether ``text`` equals or is contained in one of ``summaries`` (whole words, after ``normalise_text``):
    then it is true of the photo the summaries describe."""
    key = normalise_text(text)
    return bool(key) and any(f" {key} " in f" {normalise_text(s)} " for s in summaries)


def meaning_problem(kind: str, negative: Analysis, source: Analysis, summaries: Sequence[str] = ()) -> str | None:
    """Why ``negative`` is not a negative of ``kind`` for ``source`` (the summary it was made from), or None.

    - any kind: it must not equal or be contained in ``source`` or any of ``summaries``;
    - ``swaps``: the same multiset of content words (nouns, verbs, adjectives, numerals, proper nouns,
      lemmatised), in another order, with other pairings (not the same sentence said another way);
    - ``basic``, ``layout``: at least one content word the source lacks, or a spatial phrase placed anew
      (``_placed_anew``: "the tower on the left" -> "on the right"); content words that are a (multi)subset
      of the source's, with nothing placed anew, only drop or reorder what is true.
    """
    if restates(negative.text, (source.text, *summaries)):
        return "restates a summary"
    theirs, ours = _content_words(source, negative)
    if kind == "swaps":
        if Counter(ours) != Counter(theirs):
            return "not the summary's words"
        if ours == theirs:
            return "same order as the summary"
        if negative.pairs == source.pairs:
            return "same pairings as the summary"
        return None
    if not Counter(ours) - Counter(theirs) and not _placed_anew(negative, source):
        return "only drops or reorders the summary's words"
    return None


def _placed_anew(negative: Analysis, source: Analysis) -> bool:
    """Whether a spatial phrase of ``negative`` puts something somewhere new: its place words are not the
    source's in the source's order (a new one, or "flag on the left, model on the right" -> "flag on the
    right, model on the left"), and the parse places something anew. Words dropped leave the rest in order,
    so a shortened text never counts, whatever the parse made of it."""
    theirs = iter(source.place_words)
    in_order = all(any(w == v for v in theirs) for w in negative.place_words)
    return not in_order and bool(set(negative.places) - set(source.places))


def _content_words(source: Analysis, negative: Analysis) -> tuple[list[str], list[str]]:
    """The content words of ``source`` and of ``negative``, lemmatised, in order. A word is content when
    either text tags it so (a reordered sentence may tag the same word otherwise), and a word the source
    has is read with the source's lemma, so that both sides count the same words alike."""
    content = {w.text for w in (*source.words, *negative.words) if w.content}
    lemma: dict[str, str] = {}
    for w in sorted(source.words, key=lambda w: not w.content):
        lemma.setdefault(w.text, w.lemma)
    return ([lemma.get(w.text, w.lemma) for w in source.words if w.text in content],
            [lemma.get(w.text, w.lemma) for w in negative.words if w.text in content])


# --------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class RuleProblem:
    file: str
    key: str
    kind: str
    reason: str


def rule_negatives_for(entries: list[tuple[str, str, str]], *, seed: int, count: TokenCount,
                       limit: int = CLIP_CONTEXT, n_base: int = 1, n_mask: int = 1, **rule_options: Any
                       ) -> tuple[dict[tuple[str, str], dict[str, list[str]]], list[RuleProblem]]:
    """Rule-based negatives of (file, key, first summary) entries: ``{(file, key): {kind: [text, ...]}}``,
    up to ``n_base`` of each kind for a whole image and ``n_mask`` for a mask (``--n-base``/``--n-mask``, as
    for the LLM kinds), and the entries for which a kind fell short (none possible, unchanged, too long,
    or fewer distinct ones than asked).

    ``rule_options`` (``spacy_model``, ``wordnet_dir``) go to ``rules.rule_negative_lists`` as they are."""
    try:
        from densecaption.generation.rules import rule_negative_lists
    except ImportError as e:
        raise UserError(f"--rules needs densecaption.generation.rules, which does not import here ({e})") from e
    wanted = [(entry, n_base if entry[1] == BASE_KEY else n_mask) for entry in entries]
    wanted = [(entry, n) for entry, n in wanted if n > 0]
    texts = [text for (_, _, text), _ in wanted]
    results = rule_negative_lists(texts, seed=seed, n=[n for _, n in wanted], **rule_options) if texts else []
    if len(results) != len(texts):
        raise RuntimeError(f"rule_negative_lists returned {len(results)} results for {len(texts)} texts")
    made: dict[tuple[str, str], dict[str, list[str]]] = {}
    problems: list[RuleProblem] = []
    for ((file, key, text), n), result in zip(wanted, results):
        for name, kind in RULE_KINDS.items():
            good, reasons = _screen_rule_negatives((result or {}).get(name) or [], text, count, limit)
            if good:
                made.setdefault((file, key), {})[kind] = good[:n]
            if len(good) < n:
                reason = (f"only {len(good)} of {n} could be made" if good
                          else reasons.most_common(1)[0][0] if reasons else "none could be made")
                problems.append(RuleProblem(file, key, kind, reason))
    return made, problems


def _screen_rule_negatives(negatives: Iterable[str], source: str, count: TokenCount,
                           limit: int) -> tuple[list[str], Counter]:
    """The rule negatives worth keeping (distinct, changed after normalisation, within ``limit`` tokens) and
    why the others were not."""
    good: list[str] = []
    reasons: Counter = Counter()
    seen = {normalise_text(source)}
    for negative in negatives:
        key = normalise_text(negative or "")
        if not key:
            continue
        if key == normalise_text(source):
            reasons["unchanged after normalisation"] += 1
        elif key in seen:
            reasons["repeated"] += 1
        elif count(negative) > limit:
            reasons[f"over {limit} CLIP tokens"] += 1
        else:
            seen.add(key)
            good.append(negative)
    return good, reasons


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
