"""CLIP token counting as the project defines it (docs/interfaces.md): ``len(input_ids)`` of the CLIP BPE
tokenizer with the start and end tokens, no truncation. "Fits 77" means a count of at most 77."""

from __future__ import annotations

CLIP_CONTEXT = 77


class ClipTokenCounter:
    """Counts CLIP BPE tokens with open_clip's tokenizer, which ships its vocabulary (works offline)."""

    def __init__(self) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self._tokenizer = SimpleTokenizer()
        self.name = "open_clip SimpleTokenizer (CLIP BPE, 49408 tokens)"

    def __call__(self, text: str) -> int:
        return len(self._tokenizer.encode(text)) + 2

    def fits(self, text: str, limit: int = CLIP_CONTEXT) -> bool:
        return self(text) <= limit
