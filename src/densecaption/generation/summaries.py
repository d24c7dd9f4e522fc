"""sDCI summaries: CLIP-sized summaries of each photo and of each large mask, written by a language model.

The method of DCI's appendix A.1 and A.3, per entry (the whole image, then each mask whose unpadded box is
at least 224 px, as sDCI keeps them):

1. a first summary of about 65 words of the text DCI assembled for the entry (``data.text``), which stays
   the entry's *first* summary;
2. a reduce loop that asks for a few words shorter (or clearly shorter when far off) until the summary fits
   77 CLIP tokens, with a bounded number of tries; still too long after them, the entry fails;
3. a multi-summary prompt answered as a numbered list of 5, repeated (telling the model which summaries
   exist already, so greedy decoding still gives new ones) until the entry has N summaries that fit.
   Upstream wanted at least 9 more than the first for the whole image and at least max(4, ln(tokens))
   more for a mask; those are the defaults.

Replies go through ``replies.strip_preamble`` / ``replies.parse_numbered``. One entry is one job of the
job runner, so a long run resumes where it stopped. The templates are ``TEMPLATES`` or a ``--prompts``
file's (``generation.prompts``), recorded in the job log's header.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from densecaption.data.schema import BASE_KEY, DCIImage, mask_key
from densecaption.data.sdci import MIN_BOX, EntryFilter
from densecaption.data.text import image_text, mask_text
from densecaption.generation.backends import TextBackend
from densecaption.generation.jobs import Job, JobContext, JobFailed
from densecaption.generation.prompts import PromptSet, fill
from densecaption.generation.replies import normalise_text, parse_numbered, strip_preamble
from densecaption.tokens import CLIP_CONTEXT

TokenCount = Callable[[str], int]
PROMPT_VERSION = "1"
"""Bumped whenever a prompt below changes, so a job log of the old prompts is not resumed with new ones."""

FIRST_IMAGE = (
    "You will be given a long description of a photograph. Condense it into a summary of about {words} words "
    "that keeps as much of what can be seen as that length allows, giving priority to what the description "
    "mentions first. The summary must still be true of the same photograph. Reply with the summary only, as a "
    "single line.")
FIRST_REGION = (
    "You will be given a description of one region of a photograph. Condense it into a single line of at most "
    "{words} words that keeps as much of what can be seen as that length allows. Do not add anything the "
    "description does not say. Reply with the summary only, as a single line.")
SHORTEN_A_LITTLE = (
    "You will be given a description of a scene. Rephrase it so that it becomes a few words shorter while "
    "keeping the important details. Reply with the new description only, as a single line.")
SHORTEN_MORE = (
    "You will be given a description of a scene. Rephrase it so that it becomes clearly shorter while keeping "
    "the important details. Reply with the new description only, as a single line.")
MULTI = (
    "You write alternative summaries of a photograph from its complete description. Write {n} different "
    "summaries that are all accurate for the same photograph but may pay attention to different details; "
    "each should be a few sentences and under {words} words. Reply with a numbered list only, in the form:\n"
    "1. <summary>\n2. <summary>\n...")
TEMPLATES = {"first_image": FIRST_IMAGE, "first_region": FIRST_REGION, "shorten_a_little": SHORTEN_A_LITTLE,
             "shorten_more": SHORTEN_MORE, "multi": MULTI}
"""The built-in templates by name (the names a ``--prompts`` file may set)."""


def builtin_prompts() -> PromptSet:
    """The built-in summary templates, as a run records them."""
    return PromptSet(TEMPLATES, PROMPT_VERSION)


@dataclass(frozen=True)
class SummaryConfig:
    """How summaries are made; everything here shapes the output and goes into the job log's header."""

    words: int = 65
    limit: int = CLIP_CONTEXT
    """A summary must fit this many CLIP tokens (start and end tokens included)."""
    n_base: int = 10
    """Summaries wanted for the whole image, the first included (upstream: the first and at least 9 more)."""
    n_mask: int | None = None
    """Summaries wanted for a mask, the first included; None: 1 + max(4, ceil(ln(CLIP tokens of its text)))."""
    per_call: int = 5
    extra_calls: int = 2
    """Multi-summary calls allowed beyond the fewest that could give N."""
    reduce_tries: int = 4
    max_tokens: int = 256
    multi_max_tokens: int = 1024
    max_input_tokens: int = 1000
    """Texts longer than this (CLIP tokens) lose lines from the end first, as upstream bounded its input."""
    masks: bool = True
    min_box: int = MIN_BOX
    prompts: PromptSet = field(default_factory=builtin_prompts)
    """The templates (built-in, or a ``--prompts`` file's); recorded in the job log's header."""

    def settings(self) -> dict[str, Any]:
        """What shapes each entry's output (not which entries run: ``masks`` and ``min_box`` may change
        between runs into one output)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("masks", "min_box", "prompts")}
        return {**fields, "prompts": self.prompts.manifest()}

    def wanted(self, key: str, text_tokens: int) -> int:
        if key == BASE_KEY:
            return self.n_base
        if self.n_mask is not None:
            return self.n_mask
        return 1 + max(4, math.ceil(math.log(max(text_tokens, 2))))


@dataclass(frozen=True)
class SummaryItem:
    """One entry to summarise: its record, key, the assembled text and how many summaries it wants."""

    file: str
    key: str
    text: str
    wanted: int


def job_id(file: str, *parts: str) -> str:
    """The job id of an entry (and kind): ``<file>#<key>[#<kind>]``; file names never hold ``#``."""
    return "#".join((file, *parts))


def bound_text(text: str, count: TokenCount, max_tokens: int) -> str:
    """The text, with lines dropped from the end until it fits ``max_tokens`` (the first line always stays)."""
    lines = text.split("\n")
    while len(lines) > 1 and count("\n".join(lines)) > max_tokens:
        lines.pop()
    return "\n".join(lines)


def entry_texts(record: DCIImage, config: SummaryConfig) -> list[tuple[str, str]]:
    """(key, text) of the entries to summarise: the whole image, then masks passing sDCI's box filter."""
    out = [(BASE_KEY, image_text(record))]
    if config.masks:
        filt = EntryFilter(min_box=config.min_box, require_summaries=False)
        out += [(mask_key(m.idx), mask_text(record, m.idx)) for m in record.masks.values() if filt.keeps(record, m)]
    return out


def summary_jobs(records: Iterable[DCIImage], config: SummaryConfig, count: TokenCount) -> list[Job[SummaryItem]]:
    jobs = []
    for record in records:
        for key, text in entry_texts(record, config):
            text = bound_text(text, count, config.max_input_tokens)
            jobs.append(Job(job_id(record.file, key),
                            SummaryItem(record.file, key, text, config.wanted(key, count(text)))))
    return jobs


@dataclass
class Chat:
    """One job's way to ask the model: a system and a user message, with the job's retries and seeds."""

    backend: TextBackend
    ctx: JobContext

    def ask(self, system: str, user: str, *, max_tokens: int) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.ctx.call(self.backend.generate, messages, max_tokens=max_tokens, seed=self.ctx.next_seed())


def reduce_to_fit(chat: Chat, text: str, limit: int, count: TokenCount, *, tries: int, max_tokens: int,
                  prompts: Mapping[str, str] | PromptSet | None = None) -> str:
    """Ask for shorter rephrasings until ``text`` fits ``limit`` CLIP tokens; at most ``tries`` requests.

    A reply that is empty or not shorter is a wasted try (the text so far is kept), and the next request
    asks for clearly shorter, so that greedy decoding does not repeat the same reply. Raises ``JobFailed``
    when the text still does not fit after the last try. ``prompts`` holds ``shorten_a_little`` and
    ``shorten_more`` (default: the built-in ones).
    """
    prompts = TEMPLATES if prompts is None else prompts
    length = count(text)
    wasted = False
    for _ in range(tries):
        if length <= limit:
            return text
        prompt = prompts["shorten_a_little"] if length - limit < 10 and not wasted else prompts["shorten_more"]
        candidate = strip_preamble(chat.ask(prompt, text, max_tokens=max_tokens))
        wasted = not candidate or count(candidate) >= length
        if not wasted:
            text, length = candidate, count(candidate)
    if length <= limit:
        return text
    raise JobFailed(f"still {length} CLIP tokens (limit {limit}) after {tries} reduce rounds")


def first_summary(chat: Chat, item: SummaryItem, config: SummaryConfig, count: TokenCount) -> str:
    prompt = fill(config.prompts["first_image" if item.key == BASE_KEY else "first_region"], words=config.words)
    summary = strip_preamble(chat.ask(prompt, item.text, max_tokens=config.max_tokens))
    if not summary:
        raise JobFailed("empty first summary")
    return reduce_to_fit(chat, summary, config.limit, count, tries=config.reduce_tries, max_tokens=config.max_tokens,
                         prompts=config.prompts)


def multi_message(text: str, existing: list[str]) -> str:
    message = f"Complete description:\n{text}\n\n"
    if existing:
        message += ("Summaries already written (write new ones that differ from these):\n"
                    + "\n".join(f"- {s}" for s in existing) + "\n\n")
    return message + "Summaries:"


def more_summaries(chat: Chat, item: SummaryItem, summaries: list[str], config: SummaryConfig,
                   count: TokenCount) -> list[str]:
    """``summaries`` extended with alternatives from numbered-list replies until ``item.wanted`` (bounded).

    An alternative is kept when it is not empty, fits the limit and differs (after ``normalise_text``) from every
    summary kept so far. Raises ``JobFailed`` when the calls run out first.
    """
    summaries = list(summaries)
    seen = {normalise_text(s) for s in summaries}
    calls = math.ceil(max(0, item.wanted - len(summaries)) / config.per_call) + config.extra_calls
    made = 0
    while len(summaries) < item.wanted and made < calls:
        made += 1
        reply = chat.ask(fill(config.prompts["multi"], n=config.per_call, words=config.words),
                         multi_message(item.text, summaries),
                         max_tokens=config.multi_max_tokens)
        for candidate in parse_numbered(reply):
            key = normalise_text(candidate)
            if key and key not in seen and count(candidate) <= config.limit:
                seen.add(key)
                summaries.append(candidate)
                if len(summaries) == item.wanted:
                    break
    if len(summaries) < item.wanted:
        raise JobFailed(f"only {len(summaries)} of {item.wanted} summaries that fit after {made} multi-summary "
                        f"calls")
    return summaries


def summarise(item: SummaryItem, chat: Chat, config: SummaryConfig, count: TokenCount) -> list[str]:
    """The entry's summaries, the first one first (see the module docstring)."""
    first = first_summary(chat, item, config, count)
    return more_summaries(chat, item, [first], config, count)


def check_summaries(config: SummaryConfig, count: TokenCount) -> Callable[[SummaryItem, Any], str | None]:
    """The job check: a list of ``wanted`` non-empty, distinct summaries that each fit the limit."""

    def check(item: SummaryItem, output: Any) -> str | None:
        if not isinstance(output, list) or not all(isinstance(s, str) for s in output):
            return "output is not a list of summaries"
        if len(output) < item.wanted:
            return f"only {len(output)} of {item.wanted} summaries"
        if any(not s.strip() for s in output):
            return "an empty summary"
        too_long = [count(s) for s in output if count(s) > config.limit]
        if too_long:
            return f"a summary of {max(too_long)} CLIP tokens (limit {config.limit})"
        return None

    return check


def with_summaries(record: DCIImage, outputs: Mapping[str, list[str]]) -> DCIImage:
    """The record with the new summaries (whole image first, masks in ``mask_data`` order).

    Negatives and clip_scores were made from the old summaries, so they are dropped. Without a whole-image
    summary the record gets none (sDCI has no entries for it) and goes to ``annotations/`` only.
    """
    if BASE_KEY not in outputs:
        summaries = None
    else:
        keys = [BASE_KEY] + [mask_key(i) for i in record.masks if mask_key(i) in outputs]
        summaries = {k: list(outputs[k]) for k in keys}
    return dataclasses.replace(record, summaries=summaries, negatives=None, clip_scores=None,
                               bare_summary_keys=frozenset())
