"""Deterministic draws addressed by key, all derived from one seed.

A fleet runs thousands of tasks whose interleaving depends on the network, so a
shared `random.Random` consumed in event order would give a different schedule
on every run. Instead every draw is named by what it is for (charge point,
connector, purpose, index) and computed as a keyed hash of that name: the same
seed gives the same draw for the same question, whatever order tasks ask in,
and a replay can skip questions without shifting the answers to later ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from hashlib import blake2b
from typing import TypeVar

__all__ = ["Rng"]

T = TypeVar("T")
_SCALE = 2.0**-53


def _name(parts: tuple[object, ...]) -> bytes:
    return "\x1f".join(map(str, parts)).encode()


class Rng:
    """A node in the tree of draws: `child(...)` narrows, `random(...)` draws."""

    __slots__ = ("_key",)

    def __init__(self, seed: int | str) -> None:
        # The root key comes from a seeded random.Random so that `--seed 7`
        # means what it means everywhere else in Python.
        self._key = random.Random(seed).getrandbits(128).to_bytes(16, "little")

    @classmethod
    def _from_key(cls, key: bytes) -> Rng:
        rng = cls.__new__(cls)
        rng._key = key
        return rng

    def child(self, *parts: object) -> Rng:
        return Rng._from_key(blake2b(_name(parts), key=self._key, digest_size=16).digest())

    def bits64(self, *parts: object) -> int:
        """64 random bits for the question named by `parts` (also a seed for Faker)."""
        digest = blake2b(_name(parts), key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "little")

    def random(self, *parts: object) -> float:
        """A float in [0, 1) for the question named by `parts`."""
        return (self.bits64(*parts) >> 11) * _SCALE

    def uniform(self, lo: float, hi: float, *parts: object) -> float:
        return lo + (hi - lo) * self.random(*parts)

    def chance(self, probability: float, *parts: object) -> bool:
        return self.random(*parts) < probability

    def randint(self, lo: int, hi: int, *parts: object) -> int:
        """An int in [lo, hi], both ends included."""
        return lo + int(self.random(*parts) * (hi - lo + 1))

    def choice(self, seq: Sequence[T], *parts: object) -> T:
        return seq[int(self.random(*parts) * len(seq))]
