"""A connector's recent history as one list, newest first: statuses, transactions, sessions, audit events. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from csms.core.times import as_utc
from csms.ui.words import action_words

__all__ = ["Entry", "build_timeline", "details_text"]


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # status, transaction, session, audit
    title: str
    detail: str = ""
    actor: str = ""


def details_text(details: Mapping[str, Any]) -> str:
    parts = []
    for k, v in details.items():
        if v is None or v == [] or v == "":
            continue
        if isinstance(v, bool):
            v = "yes" if v else "no"
        parts.append(f"{k.replace('_', ' ')}: {', '.join(map(str, v)) if isinstance(v, list) else v}")
    return "; ".join(parts)


def _kwh(wh: int | None) -> str:
    return "-" if wh is None else f"{wh / 1000:.3f} kWh"


def build_timeline(
    statuses: Iterable[Any],
    transactions: Iterable[Mapping[str, Any]],
    sessions: Iterable[Mapping[str, Any]],
    audit: Iterable[Any],
    limit: int = 60,
) -> list[Entry]:
    out: list[Entry] = []
    for st in statuses:
        err = f" ({st.error_code})" if st.error_code and st.error_code != "NoError" else ""
        out.append(Entry(as_utc(st.at), "status", f"status {st.status}{err}"))
    for t in transactions:
        out.append(
            Entry(
                t["start"],
                "transaction",
                f"transaction {t['id']} started",
                f"id tag {t['id_tag']}, meter {t['meter_start']} Wh",
            )
        )
        if t["stop"] is not None:
            how = (
                "force-ended by the CSMS"
                if t["reason"] == "ForceEnded"
                else "closed by the CSMS"
                if t["reason"] in ("Orphaned", "Superseded", "IdleTimeout", "InvalidMeterStop")
                else "stopped by the charger"
            )
            out.append(
                Entry(
                    t["stop"],
                    "transaction",
                    f"transaction {t['id']} {how} ({t['reason']})",
                    f"meter {t['meter_stop']} Wh, {_kwh(None if t['meter_stop'] is None else max(0, t['meter_stop'] - t['meter_start']))}",  # noqa: E501
                )
            )
    for c in sessions:
        out.append(
            Entry(
                c["created"],
                "session",
                f"session {c['id'][:8]} created",
                f"id tag {c['id_tag']}, tariff {c['tariff']} per kWh",
            )
        )
        if c["end"] is not None:
            fee = "-" if c["fee"] is None else str(c["fee"])
            extra = f"; {c['waived']}" if c["waived"] else ""
            extra += "; reconciled with the charger's late StopTransaction" if c["reconciled"] else ""
            out.append(
                Entry(
                    c["end"],
                    "session",
                    f"session {c['id'][:8]} ended ({c['end_reason'] or c['status']})",
                    f"{_kwh(c['energy_wh'])}, fee {fee}{extra}",
                )
            )
    for e in audit:
        out.append(
            Entry(e.at, "audit", action_words(e.action), details_text({"subject": e.subject, **e.details}), e.actor)
        )
    out.sort(key=lambda e: e.at, reverse=True)
    return out[:limit]
