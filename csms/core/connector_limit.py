"""Which connector ids a charge point may name: 0 to `--max-connectors-per-charger`.

Every connector a charger names is kept (live state, a database row, a tile on the board), so an
unbounded id is unbounded memory and board work for one authenticated charger. OCPP numbers them
from 1 without gaps (1.6 connectorId; 2.0.1 evseId, and connectorId within its EVSE), and 0 is
the charge point itself (1.6) or its main meter (2.0.1), so a charger with at most N connectors
never needs an id above N. Out of range is an invalid value, OCPP-J's PropertyConstraintViolation.
"""

from __future__ import annotations

__all__ = ["CODE", "connector_problem"]

CODE = "PropertyConstraintViolation"


def connector_problem(limit: int, **ids: int | None) -> str | None:
    """Why these ids (by their field names; None: absent) are refused, or None when all are in 0..limit."""
    for name, value in ids.items():
        if value is not None and not 0 <= value <= limit:
            return (
                f"{name} {value} is outside 0..{limit}: this CSMS keeps at most {limit} connectors per charge "
                "point (its operator can raise --max-connectors-per-charger)"
            )
    return None
