"""The slow tier names files that exist: a renamed slow test must not fall into `make test` unnoticed."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SLOW_TIER

ROOT = Path(__file__).resolve().parents[2]


def test_every_slow_tier_file_exists():
    assert sorted(p for p in SLOW_TIER if not (ROOT / p).is_file()) == []
