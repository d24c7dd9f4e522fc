"""Random generators and seeds derived from a run's seed and the item they are for.

Results must not depend on batch, order, concurrency or how many processes ran, so each item draws from its
own generator, derived from the seed and keys that name the item. Two derivations are in use, each kept
bit-for-bit because published numbers and stored runs depend on the streams they give:

- :func:`rng_for` / :func:`seed_for` hash the seed and keys (SHA-256 over them joined by NUL bytes); new
  code should use these.
- :func:`keyed_rng` seeds Python's generator with the keys joined by ``:`` (the training samplers' and sDCI
  picks' derivation, ``random.Random(f"{seed}:{epoch}")``).
"""

from __future__ import annotations

import hashlib
import random


def _digest(seed: object, keys: tuple[object, ...]) -> bytes:
    return hashlib.sha256("\x00".join(map(str, (seed, *keys))).encode("utf-8")).digest()


def rng_for(seed: int, *keys: object) -> random.Random:
    """A generator for the item named by ``keys`` under ``seed`` (e.g. ``rng_for(seed, "swap", text)``),
    independent of every other item's."""
    return random.Random(int.from_bytes(_digest(int(seed), keys)[:8], "big"))


def seed_for(seed: int, *keys: object) -> int:
    """A 31-bit seed (what servers and samplers take) for the item named by ``keys``, derived as in
    :func:`rng_for`."""
    return int.from_bytes(_digest(int(seed), keys)[:4], "big") & 0x7FFFFFFF


def keyed_rng(*keys: object) -> random.Random:
    """Python's generator seeded with the keys joined by ``:`` (``keyed_rng(seed, epoch)`` is
    ``random.Random(f"{seed}:{epoch}")``)."""
    return random.Random(":".join(map(str, keys)))
