"""The dependencies a running CSMS hands to its handlers and routes."""

from __future__ import annotations

from dataclasses import dataclass, field

from .clock import Clock
from .config import Settings
from .db.database import Database
from .registry import Registry

__all__ = ["Context"]


@dataclass
class Context:
    settings: Settings
    clock: Clock
    db: Database
    registry: Registry
    # Charge point ids allowed to connect (loaded at start, grown by registration).
    known_charge_points: set[str] = field(default_factory=set)
