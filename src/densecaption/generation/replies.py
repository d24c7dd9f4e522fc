"""Cleaning chat-model replies: preambles, numbered lists, and the normal form used to compare texts.

Chat models often open with "Sure, here is the summary:" and close with "I hope this helps!". DCI's
generation scripts kept only what follows the last line break; ``strip_preamble`` does that after dropping
trailing chit-chat, so a closing line is not mistaken for the answer, and also removes a one-line
"Sure! Here it is: ..." opener, a "Summary:" label, list markers, markdown emphasis and wrapping quotes.
Multi-summary replies are numbered lists; ``parse_numbered`` reads them without the last-line rule.
"""

from __future__ import annotations

import re

_POSTAMBLE = re.compile(r"^(i hope|hope this|let me know|feel free|note:|please note|is there anything|"
                        r"this (summary|description|version|caption) (captures|keeps|retains|is|has|uses))", re.I)
_OPENER = re.compile(r"^(?:(?:sure|certainly|of course|okay|ok|absolutely|alright)\b[^:\n]{0,80}"
                     r"|(?:here(?:'s| is| are)|below is)\s+(?:\w+\s+){0,5}?(?:summary|summaries|description|"
                     r"descriptions|caption|version|rewrite|negative|list|text|result)\b[^:\n]{0,40}):\s*", re.I)
_LABEL = re.compile(r"^(?:new |updated |shorter |revised |final )?(summary|description|caption|negative|answer|"
                    r"response|output)\s*(?:\d+\s*)?:\s*", re.I)
_MARKER = re.compile(r"^(?:[-*\u2022]\s+|\d{1,2}[.)]\s+)")
_ITEM = re.compile(r"^\s*(?:\*\*)?(?:#\s*)?(\d{1,2})(?:\*\*)?[.):](?:\*\*)?(?:\s+(.*\S))?\s*$")
_INLINE_ITEM = re.compile(r"(?:^|(?<=\s))(\d{1,2})[.)]\s+")
_QUOTES = {'"': '"', "\u201c": "\u201d", "'": "'", "\u2018": "\u2019"}


def clean_line(text: str) -> str:
    """One answer line without a leading opener or label, list marker, markdown emphasis or quotes."""
    line = text.strip()
    for _ in range(3):  # "Sure! Summary: "A dog..."" peels in a few rounds
        before = line
        line = _OPENER.sub("", line, count=1).strip()
        line = _LABEL.sub("", line, count=1).strip()
        line = _MARKER.sub("", line, count=1).strip()
        if line.startswith("**") and line.endswith("**") and len(line) > 4:
            line = line[2:-2].strip()
        if len(line) >= 2 and line[0] in _QUOTES and line[-1] == _QUOTES[line[0]]:
            line = line[1:-1].strip()
        if line == before:
            break
    return line


def strip_preamble(reply: str) -> str:
    """The answer in a reply that should hold one line: trailing chit-chat lines dropped, then everything
    before the last line break dropped (DCI's rule), then ``clean_line``. Empty when nothing is left."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    while len(lines) > 1 and _POSTAMBLE.match(clean_line(lines[-1])):
        lines.pop()
    if not lines:
        return ""
    return clean_line(lines[-1])


def parse_numbered(reply: str) -> list[str]:
    """The items of a numbered list ("1. ...", "2) ...", "**3.** ..."), in order, cleaned.

    Lines before the first item (a preamble) are ignored; a non-blank line right after an item continues
    it; a blank line or a chit-chat line ends it, so a closing remark is not glued to the last item. A list
    written on one line ("1. A cat. 2. A dog.") is split at its numbers when they count up from 1.
    """
    items: list[str] = []
    open_item = False
    for raw in reply.splitlines():
        line = raw.strip()
        match = _ITEM.match(raw)
        if match:
            items.append(match.group(2) or "")
            open_item = True
        elif not line or _POSTAMBLE.match(line):
            open_item = False
        elif open_item:
            items[-1] += " " + line
    if len(items) < 2:
        inline = _split_inline(reply)
        if len(inline) > len(items):
            items = inline
    cleaned = [clean_line(i) for i in items]
    return [c for c in cleaned if c]


def _split_inline(reply: str) -> list[str]:
    """Items of "1. A. 2. B. 3. C." on one line: cut at numbers that count up from 1."""
    cuts: list[tuple[int, int]] = []
    expected = 1
    for m in _INLINE_ITEM.finditer(reply):
        if int(m.group(1)) == expected:
            cuts.append((m.start(), m.end()))
            expected += 1
    items = []
    for n, (_, begin) in enumerate(cuts):
        end = cuts[n + 1][0] if n + 1 < len(cuts) else len(reply)
        items.append(" ".join(reply[begin:end].split()))
    return items


_NOT_WORD = re.compile(r"[\W_]+")


def normalise_text(text: str) -> str:
    """Lower case, letters and digits only (of any script), single spaces: two texts equal here say the same
    thing. The one normal form of the project: negatives (LLM and rule-based) are made and checked with it."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


normalise = normalise_text  # its former name, still imported by tests


def strip_chatter(reply: str) -> str:
    """A reply that may span lines (a caption), as one line: opening lines that introduce the answer
    ("Sure, here is a description:") and closing chit-chat dropped, the rest joined with spaces."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    while len(lines) > 1 and _POSTAMBLE.match(clean_line(lines[-1])):
        lines.pop()
    while len(lines) > 1 and lines[0].rstrip("*").endswith(":"):
        lines.pop(0)
    return clean_line(" ".join(lines))
