"""Who may charge: the id tag list and the OCPP 1.6 idTagInfo it answers.

Pure. The shell (csms/db/id_tag_store.py, the handlers, the REST API) looks a tag up
and asks `decide`. OCPP 1.6 idTokens are CiString20 (case-insensitive): the list keeps
them upper-case and looks them up the same way.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from csms.core.times import as_utc, iso, parse_iso

__all__ = [
    "IdTagStatus",
    "IdTagRecord",
    "IdTagInfo",
    "decide",
    "normalise",
    "match_key",
    "id_tag_problem",
    "parse_csv",
    "CsvError",
    "MAX_ID_TAG_LENGTH",
]

MAX_ID_TAG_LENGTH = 20  # OCPP 1.6 IdToken: CiString20Type


class IdTagStatus(StrEnum):
    """OCPP 1.6 AuthorizationStatus."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"  # only ever answered, never stored


STORABLE = (IdTagStatus.ACCEPTED, IdTagStatus.BLOCKED, IdTagStatus.EXPIRED, IdTagStatus.INVALID)


@dataclass(frozen=True)
class IdTagRecord:
    id_tag: str
    status: IdTagStatus
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None


@dataclass(frozen=True)
class IdTagInfo:
    status: IdTagStatus
    expiry_date: datetime | None = None
    parent_id_tag: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status is IdTagStatus.ACCEPTED

    def payload(self) -> dict[str, Any]:
        """The OCPP idTagInfo object."""
        out: dict[str, Any] = {"status": self.status.value}
        if self.expiry_date is not None:
            out["expiryDate"] = iso(self.expiry_date)
        if self.parent_id_tag is not None:
            out["parentIdTag"] = self.parent_id_tag
        return out


def normalise(id_tag: str) -> str:
    """An id tag an admin typed (REST, CSV, CLI): surrounding spaces dropped, upper case."""
    return id_tag.strip().upper()


_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)


def match_key(id_tag: str) -> str:
    """How an idTag a charger sends is matched, against the list and against open transactions alike: ASCII
    case does not count (CiString), every other character does. A padded " GOODTAG" (or one with a no-break
    space) is another tag, not the listed one: it must not pass as GOODTAG while the ConcurrentTx check misses
    it. Only ASCII letters fold, because the open-transaction check folds in SQL (`upper(id_tag)`, which is
    ASCII-only on SQLite): a Python-only fold such as "ß" -> "SS" would let a tag pass the list as one key and
    hide from that check under another."""
    return id_tag.translate(_ASCII_UPPER)


def id_tag_problem(id_tag: str) -> str | None:
    if not id_tag.strip():
        return "an id tag is not empty"
    if len(id_tag.strip()) > MAX_ID_TAG_LENGTH:
        return f"an id tag has at most {MAX_ID_TAG_LENGTH} characters (OCPP 1.6 CiString20)"
    if any(not ch.isprintable() for ch in id_tag):
        return "an id tag holds printable characters only"
    return None


def decide(
    tag: IdTagRecord | None, *, now: datetime, accept_unknown: bool, in_another_transaction: bool = False
) -> IdTagInfo:
    """The idTagInfo for an Authorize, a StartTransaction or a StopTransaction.

    Unknown tags are Invalid unless `accept_unknown` (a test bench): then Accepted, with no
    ConcurrentTx either, since nothing is known about them. A listed tag answers its own
    status; an Accepted one past its expiry date is Expired; an Accepted one that is already
    in another open transaction is ConcurrentTx (StartTransaction only: OCPP 1.6 says it is
    "only relevant for a StartTransaction.req", and an Authorize may be the driver stopping).
    """
    if tag is None:
        return IdTagInfo(IdTagStatus.ACCEPTED if accept_unknown else IdTagStatus.INVALID)
    expiry = as_utc(tag.expiry_date)
    if tag.status is not IdTagStatus.ACCEPTED:
        return IdTagInfo(tag.status, expiry, tag.parent_id_tag)
    if expiry is not None and expiry <= now:
        return IdTagInfo(IdTagStatus.EXPIRED, expiry, tag.parent_id_tag)
    if in_another_transaction:
        return IdTagInfo(IdTagStatus.CONCURRENT_TX, expiry, tag.parent_id_tag)
    return IdTagInfo(IdTagStatus.ACCEPTED, expiry, tag.parent_id_tag)


class CsvError(ValueError):
    """A tag file line that cannot be imported; the message names the line."""


_COLUMNS = ("idTag", "status", "expiryDate", "parentIdTag")


def parse_csv(text: str) -> list[IdTagRecord]:
    """`idTag,status[,expiryDate][,parentIdTag]` with that header line; every problem names its line."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if "idTag" not in header:
        raise CsvError(f"line 1: the header must name the columns {', '.join(_COLUMNS)} (idTag at least)")
    unknown = set(header) - set(_COLUMNS)
    if unknown:
        raise CsvError(f"line 1: unknown columns {sorted(unknown)}; known: {', '.join(_COLUMNS)}")
    out: list[IdTagRecord] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        cells = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if not any(cells.values()):
            continue
        try:
            record = record_from(
                cells.get("idTag", ""),
                cells.get("status") or "Accepted",
                cells.get("expiryDate") or None,
                cells.get("parentIdTag") or None,
            )
        except ValueError as exc:
            raise CsvError(f"line {line}: {exc}") from None
        if record.id_tag in seen:
            raise CsvError(f"line {line}: id tag {record.id_tag} is already on line {seen[record.id_tag]}")
        seen[record.id_tag] = line
        out.append(record)
    return out


def record_from(id_tag: str, status: str, expiry_date: str | datetime | None, parent_id_tag: str | None) -> IdTagRecord:
    """Validate one tag's fields (REST body or CSV row); ValueError says what is wrong."""
    problem = id_tag_problem(id_tag)
    if problem:
        raise ValueError(problem)
    try:
        st = IdTagStatus(status)
    except ValueError:
        st = None
    if st not in STORABLE:
        raise ValueError(f"status {status!r} must be one of {', '.join(s.value for s in STORABLE)}")
    expiry = expiry_date if isinstance(expiry_date, datetime) or expiry_date is None else parse_iso(expiry_date)
    if expiry_date is not None and expiry is None:
        raise ValueError(f"expiryDate {expiry_date!r} is not an ISO 8601 date-time")
    parent = None
    if parent_id_tag is not None:
        problem = id_tag_problem(parent_id_tag)
        if problem:
            raise ValueError(f"parentIdTag: {problem}")
        parent = normalise(parent_id_tag)
    return IdTagRecord(normalise(id_tag), st, as_utc(expiry), parent)
