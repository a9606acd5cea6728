"""The connector board arranged for a site of any size: search, filters, the suspected-stuck list, chargers
grouped and sorted. Pure (no IO): rows in, what the page shows out."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from csms.ui.words import BoardRow

__all__ = ["ChargerGroup", "BoardView", "arrange_board", "matches"]

_RANK = {"busy": 0, "offline": 1, "free": 2}


@dataclass(frozen=True)
class ChargerGroup:
    charge_point_id: str
    station_id: str
    online: bool
    rows: list[BoardRow]

    @property
    def stuck(self) -> int:
        return sum(1 for r in self.rows if r.suspicions)

    @property
    def busy(self) -> int:
        return sum(1 for r in self.rows if r.verdict == "busy")

    @property
    def all_free(self) -> bool:
        """Nothing to read here: the board shows it as one line, so a big site's page stays short."""
        return all(r.verdict == "free" and not r.suspicions for r in self.rows)


@dataclass(frozen=True)
class BoardView:
    counts: dict[str, int]
    suspected: list[BoardRow]  # shown first, whatever the sort
    groups: list[ChargerGroup]
    rows: list[BoardRow] = field(default_factory=list)  # the same rows, ungrouped (the cards view)
    shown: int = 0
    matching: int = 0


def matches(row: BoardRow, q: str) -> bool:
    """A search finds a charger or station id (any part, any case), an id tag, or a transaction id."""
    if not q:
        return True
    needle = q.casefold()
    if needle in row.charge_point_id.casefold() or needle in row.station_id.casefold():
        return True
    return any(needle == t.casefold() for t in row.tags) or any(q == t for t in row.transaction_ids)


def arrange_board(
    rows: list[BoardRow], *, busy: bool = False, stuck: bool = False, q: str = "", sort: str = "state", limit: int = 600
) -> BoardView:
    found = [r for r in rows if matches(r, q)]
    counts = {v: sum(1 for r in found if r.verdict == v) for v in ("free", "busy", "offline")}
    counts["stuck"] = sum(1 for r in found if r.suspicions)
    if busy:
        found = [r for r in found if r.verdict == "busy"]
    if stuck:
        found = [r for r in found if r.suspicions]
    found.sort(key=lambda r: (r.charge_point_id, r.connector_id))
    groups = [
        ChargerGroup(cp_id, members[0].station_id, any(m.online for m in members), members)
        for cp_id, grouped in groupby(found, key=lambda r: r.charge_point_id)
        for members in [list(grouped)]
    ]
    if sort == "state":
        groups.sort(key=lambda g: (-g.stuck, min(_RANK[r.verdict] for r in g.rows), -g.busy, g.charge_point_id))
    shown: list[ChargerGroup] = []
    total = 0
    for g in groups:
        if total + len(g.rows) > limit and shown:
            break
        shown.append(g)
        total += len(g.rows)
    flat = [r for g in shown for r in g.rows]
    return BoardView(
        counts=counts,
        suspected=[r for r in found if r.suspicions],
        groups=shown,
        rows=flat,
        shown=total,
        matching=len(found),
    )
