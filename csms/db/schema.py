"""The database schema's version: Alembic migrations, the start-up check, pre-Alembic databases.

`csms serve` calls `prepare` before it serves: an empty database gets today's tables, one at the
code's revision goes on, an older one is upgraded (or refused, --schema-upgrade refuse), a newer
one (a revision this code does not know) is refused. The check and the upgrade are one
transaction, DDL included on SQLite too: a migration that fails halfway leaves nothing behind. A
database made by create_all before Alembic came in has tables and no alembic_version: it is
matched against each revision's tables and columns, stamped with the newest it holds, then
treated as that revision. On PostgreSQL the
whole check runs in one transaction under an advisory lock, so processes starting together on one
database (cluster nodes, test workers) take turns instead of racing to create tables.

`decide` and `match_legacy` are the pure core; the rest gathers their inputs and applies them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

# Alembic logs its plugins as it is imported and "Context impl SQLiteImpl." on every check, at INFO;
# our own line says what was done (csms.schema). Set before the import.
logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import Script, ScriptDirectory  # noqa: E402
from sqlalchemy import Connection, Engine, create_engine, inspect, text  # noqa: E402

from csms.db.engine import make_migration_engine  # noqa: E402
from csms.db.models import Base  # noqa: E402
from csms.errors import CsmsError  # noqa: E402

__all__ = [
    "MIGRATIONS",
    "SchemaError",
    "Action",
    "Plan",
    "Outcome",
    "decide",
    "match_legacy",
    "missing_columns",
    "alembic_config",
    "head_revision",
    "history",
    "current_revision",
    "prepare",
]

log = logging.getLogger("csms.schema")

MIGRATIONS = "csms.db:migrations"  # package resource: found wherever csms is installed
VERSION_TABLE = "alembic_version"
# Held (pg_advisory_xact_lock) from the version check to the commit of the upgrade. Keyed by schema:
# databases with several schemas (the tests', two sites') do not wait for each other.
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtext('unstuck.schema.' || current_schema()))"


class SchemaError(CsmsError):
    """The database's schema cannot be used by this code as it is; the message says what to do."""


class Action(Enum):
    CREATE = "create"  # empty: today's tables, stamped head
    NOTHING = "nothing"  # at head
    UPGRADE = "upgrade"  # older (or adopted legacy): run the migrations from..to
    REFUSE_OLDER = "refuse_older"  # older and upgrades at start are off
    REFUSE_NEWER = "refuse_newer"  # a revision this code does not know
    REFUSE_LEGACY = "refuse_legacy"  # tables, no version, and they match no revision


@dataclass(frozen=True)
class Plan:
    action: Action
    current: str | None  # the database's revision (for legacy: the one it matched), None if empty
    head: str
    adopt: bool = False  # a pre-Alembic database: stamp `current` first

    @property
    def refused(self) -> bool:
        return self.action in (Action.REFUSE_OLDER, Action.REFUSE_NEWER, Action.REFUSE_LEGACY)


@dataclass(frozen=True)
class Outcome:
    """What `prepare` did, for the start-up log line."""

    plan: Plan
    seconds: float

    @property
    def summary(self) -> str:
        p = self.plan
        adopted = f" adopted_legacy_at={p.current}" if p.adopt else ""
        return f"action={p.action.value} from={p.current or 'empty'} to={p.head}{adopted} seconds={self.seconds:.3f}"


def decide(
    *,
    current: str | None,
    has_tables: bool,
    legacy_match: str | None,
    known: Sequence[str],
    head: str,
    upgrade_older: bool,
) -> Plan:
    """What to do with a database: `current` is its alembic_version (None: none), `has_tables`
    whether any of our tables exist, `legacy_match` the newest revision its tables hold (only
    looked at without a version), `known` every revision of this code."""
    if current is None and not has_tables:
        return Plan(Action.CREATE, None, head)
    adopt = current is None
    if adopt:
        if legacy_match is None:
            return Plan(Action.REFUSE_LEGACY, None, head, adopt=True)
        current = legacy_match
    if current == head:
        return Plan(Action.NOTHING, current, head, adopt=adopt)
    if current not in known:
        return Plan(Action.REFUSE_NEWER, current, head)
    return Plan(Action.UPGRADE if upgrade_older else Action.REFUSE_OLDER, current, head, adopt=adopt)


def match_legacy(
    present: Mapping[str, AbstractSet[str]], revisions: Sequence[tuple[str, Mapping[str, frozenset[str]]]]
) -> str | None:
    """The newest revision whose every table and column the database has (`revisions` oldest first,
    each with its {table: columns}); None when it lacks even the first one's."""
    found = None
    for revision, tables in revisions:
        if all(table in present and columns <= present[table] for table, columns in tables.items()):
            found = revision
    return found


def missing_columns(present: Mapping[str, set[str]], expected: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """The tables and columns of `expected` (the models) that a database at head lacks: a migration
    edited after the database was stamped, or a table altered by hand."""
    out = {}
    for table, columns in expected.items():
        lacking = sorted(columns - present.get(table, set()))
        if lacking:
            out[table] = lacking
    return out


def refusal_message(plan: Plan, url: str) -> str:
    """What a person reads when `csms serve` will not start on this database."""
    if plan.action is Action.REFUSE_NEWER:
        return (
            f"the database is at schema revision {plan.current}, which this csms does not know (its newest is "
            f"{plan.head}): it was upgraded by a newer csms. Run that newer version, or restore a backup "
            f"taken before the upgrade; this csms will not start on it."
        )
    if plan.action is Action.REFUSE_OLDER:
        adopted = " (a database from before schema versions, matched to that revision)" if plan.adopt else ""
        return (
            f"the database is at schema revision {plan.current}{adopted}, older than this csms ({plan.head}), "
            f"and --schema-upgrade is refuse. Back it up, then run: csms db upgrade --db '{url}'"
        )
    return (
        "the database has csms tables but no schema version, and they do not match even the first revision "
        "(see csms db history). Upgrade it with the csms version that made it first, or start on an empty "
        "database."
    )


# --- the shell: Alembic and the database -------------------------------------------------------


def alembic_config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    """Alembic's Config without an alembic.ini: our migrations, on this connection (or URL)."""
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """This code's newest revision (a single head: migrations form one line)."""
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise SchemaError(
            f"the migrations have {len(heads)} heads ({', '.join(heads)}): give the newer ones one "
            f"line (down_revision of each the revision before it)"
        )
    return heads[0]


def history() -> list[Script]:
    """Every revision, oldest first."""
    return list(reversed(list(_scripts().walk_revisions())))


def current_revision(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


@lru_cache(maxsize=1)
def revision_tables() -> tuple[tuple[str, Mapping[str, frozenset[str]]], ...]:
    """Each revision's {table: columns}, oldest first, read from an in-memory SQLite upgraded one
    revision at a time (only needed to adopt a pre-Alembic database)."""
    engine = create_engine("sqlite://")
    out = []
    try:
        with engine.begin() as conn:
            cfg = alembic_config(conn)
            for script in history():
                command.upgrade(cfg, script.revision)
                out.append((script.revision, _tables(conn, exclude_version=True)))
    finally:
        engine.dispose()
    return tuple(out)


def _tables(conn: Connection, *, exclude_version: bool = False) -> dict[str, frozenset[str]]:
    insp = inspect(conn)
    names = [n for n in insp.get_table_names() if not (exclude_version and n == VERSION_TABLE)]
    return {name: frozenset(c["name"] for c in insp.get_columns(name)) for name in names}


def _plan(conn: Connection, *, upgrade_older: bool) -> Plan:
    current = current_revision(conn)
    ours = set(Base.metadata.tables)
    present_names = set(inspect(conn).get_table_names())
    has_tables = bool(ours & present_names)
    legacy = None
    if current is None and has_tables:
        legacy = match_legacy(_tables(conn), revision_tables())
    return decide(
        current=current,
        has_tables=has_tables,
        legacy_match=legacy,
        known=[s.revision for s in history()],
        head=head_revision(),
        upgrade_older=upgrade_older,
    )


def _warn_about_drift(conn: Connection) -> None:
    """At head the tables should be the models'; say so loudly when they are not (queries would fail
    later, far from the cause). Two catalog queries."""
    insp = inspect(conn)
    present = {table: {c["name"] for c in cols} for (_schema, table), cols in insp.get_multi_columns().items()}
    expected = {name: {c.name for c in table.columns} for name, table in Base.metadata.tables.items()}
    lacking = missing_columns(present, expected)
    if lacking:
        log.warning(
            "csms.schema_drift the database says revision %s but lacks %s (a migration changed after this "
            "database was upgraded, or tables altered by hand): queries on them will fail. Restore the "
            "missing columns or recreate a development database",
            head_revision(),
            "; ".join(f"{t}: {', '.join(cols)}" for t, cols in lacking.items()),
        )


def _apply(conn: Connection, plan: Plan) -> None:
    cfg = alembic_config(conn)
    if plan.action is Action.CREATE:
        # Alembic's documented equivalent of upgrading an empty database: today's tables, stamped
        # head (tests/integration/test_migrations.py keeps head and the models the same).
        Base.metadata.create_all(conn)
        command.stamp(cfg, plan.head)
        return
    if plan.adopt:
        assert plan.current is not None  # not refused: the revision its tables matched
        command.stamp(cfg, plan.current)
    if plan.action is Action.UPGRADE:
        command.upgrade(cfg, plan.head)


def prepare(engine: Engine, *, upgrade_older: bool = True) -> Outcome:
    """Bring the database to this code's schema, or raise SchemaError saying why not and what to do.

    One transaction, DDL included, so a migration that fails halfway (an error, a crash, a kill)
    leaves the database as it was, alembic_version included, and the next start runs it again. On
    PostgreSQL under an advisory lock held until it commits, so concurrent starts on one database
    wait for each other and the later ones find it at head. On an SQLite file the transaction is a
    connection of its own (csms.db.engine.make_migration_engine, BEGIN IMMEDIATE): `engine`'s
    connections keep pysqlite's autocommitting DDL, which the serving code relies on.
    """
    started = time.perf_counter()
    migrations = make_migration_engine(engine.url.render_as_string(hide_password=False))
    try:
        with (migrations or engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text(_SCHEMA_LOCK))
            plan = _plan(conn, upgrade_older=upgrade_older)
            if plan.refused:
                raise SchemaError(
                    refusal_message(plan, engine.url.render_as_string(hide_password=True)),
                    current=plan.current,
                    head=plan.head,
                )
            _apply(conn, plan)
            if plan.action is Action.NOTHING:
                _warn_about_drift(conn)
    finally:
        if migrations is not None:
            migrations.dispose()
    outcome = Outcome(plan, time.perf_counter() - started)
    if plan.action is Action.UPGRADE or plan.adopt:
        log.warning(
            "csms.schema_upgraded %s (back up before upgrading; --schema-upgrade refuse makes "
            "csms serve stop instead and leaves it to csms db upgrade)",
            outcome.summary,
        )
    else:
        log.info("csms.schema %s", outcome.summary)
    return outcome
