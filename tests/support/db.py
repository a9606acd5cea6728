"""Direct database access for tests: plant stale rows, read what the CSMS stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

T = TypeVar("T")


def with_db(url: str, fn: Callable[[Session], T]) -> T:
    engine = create_engine(url)
    try:
        with Session(engine) as s, s.begin():
            return fn(s)
    finally:
        engine.dispose()
