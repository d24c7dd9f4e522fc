"""Batch samplers for CLIP fine-tuning: ``rand`` shuffles all entries, ``imggroup`` keeps an image's crops
in the same batch (hard in-image negatives). Both cover every entry exactly once per epoch, drop nothing,
and are deterministic for (seed, epoch)."""

from __future__ import annotations

import random
from typing import Iterator, Sequence

from torch.utils.data import Sampler

from densecaption.seeding import keyed_rng


class EpochBatchSampler(Sampler[list[int]]):
    """Base: ``set_epoch`` picks the epoch's order; ``state_dict`` lets a resumed run find its place."""

    def __init__(self, seed: int = 0):
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = state["seed"], state["epoch"]

    def rng(self) -> random.Random:
        return keyed_rng(self.seed, self.epoch)

    def batches(self) -> list[list[int]]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class RandomBatches(EpochBatchSampler):
    def __init__(self, n_entries: int, batch_size: int, seed: int = 0):
        super().__init__(seed)
        self.n, self.batch_size = n_entries, batch_size

    def batches(self) -> list[list[int]]:
        order = list(range(self.n))
        self.rng().shuffle(order)
        return [order[i:i + self.batch_size] for i in range(0, self.n, self.batch_size)]


class ImageGroupBatches(EpochBatchSampler):
    """Whole images per batch: groups in a shuffled order are packed into batches of at most
    ``batch_size``; an image with more crops than a batch holds fills consecutive batches by itself."""

    def __init__(self, groups: Sequence[Sequence[int]], batch_size: int, seed: int = 0):
        super().__init__(seed)
        self.groups, self.batch_size = [list(g) for g in groups if g], batch_size

    def batches(self) -> list[list[int]]:
        order = list(range(len(self.groups)))
        self.rng().shuffle(order)
        out: list[list[int]] = []
        current: list[int] = []
        for g in order:
            group = self.groups[g]
            if len(current) + len(group) > self.batch_size and current:
                out.append(current)
                current = []
            while len(group) > self.batch_size:
                out.append(group[:self.batch_size])
                group = group[self.batch_size:]
            current = current + group
        if current:
            out.append(current)
        return out
