"""The only door to the database from trio code.

Reads run in worker threads through one CapacityLimiter. Writes go through a
single writer task that groups every write waiting at that moment into one
commit: many small writes cost one fsync. `write()` returns only after the
commit (StartTransaction and StopTransaction are answered after it);
`submit()` queues and returns at once; `submit_latest()` keeps only the newest
write per key (a connector's status, a charge point's last-seen time). A latest
write that fails because the database is unreachable stays queued and is retried
(with back-off) until it is stored or a newer one replaces it: at most one per
key waits, so an outage costs memory bounded by the fleet, not by its length.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import trio
from sqlalchemy import CursorResult, Engine, Executable, Result
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from csms.db.outage import OutageLog

__all__ = [
    "Database",
    "DatabaseClosedError",
    "DatabaseHungError",
    "BulkWrite",
    "BulkStatements",
    "is_outage",
    "rowcount",
]

try:  # PostgreSQL's driver; an install for SQLite only may lack it
    from psycopg import InterfaceError as _PgInterfaceError
    from psycopg import OperationalError as _PgOperationalError

    _DriverOutage: tuple[type[BaseException], ...] = (_PgOperationalError, _PgInterfaceError)
except ImportError:  # pragma: no cover
    _DriverOutage = ()

log = logging.getLogger("csms.db")
T = TypeVar("T")
Work = Callable[[Session], Any]


class DatabaseClosedError(RuntimeError):
    """A write was submitted after the writer stopped."""


class DatabaseHungError(RuntimeError):
    """A read got no answer within the bound: the server hangs (SIGSTOP, a stuck disk), it does not refuse."""


@dataclass(frozen=True, slots=True)
class BulkWrite:
    """A one-row write of a known shape: all of a batch's writes of one kind run as one executemany."""

    kind: str
    params: dict[str, Any]


# kind -> builds the statement for a dialect name ("sqlite", "postgresql").
BulkStatements = Mapping[str, Callable[[str], Executable]]


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched: `Session.execute` is typed as returning a plain Result, but
    for those statements it is a CursorResult."""
    return cast("CursorResult[Any]", result).rowcount


def is_outage(exc: BaseException) -> bool:
    """The database is unreachable or hung (connection refused or lost, a timeout), not a bad write; also
    psycopg's own errors, from the cluster's dedicated connections."""
    return isinstance(exc, (OperationalError, InterfaceError, DatabaseHungError, *_DriverOutage)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


class _Op:
    __slots__ = ("fn", "done", "result", "error", "order", "key")

    def __init__(self, fn: Work | BulkWrite, durable: bool, order: Any = None, key: Hashable = None) -> None:
        self.key = key
        self.fn = fn
        self.done = trio.Event() if durable else None
        self.result: Any = None
        self.error: BaseException | None = None
        self.order = order


class _Read:
    __slots__ = ("fn", "done", "result", "error", "abandoned")

    def __init__(self, fn: Callable[[Session], Any]) -> None:
        self.fn = fn
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.abandoned = False


class Database:
    def __init__(
        self,
        engine: Engine,
        *,
        read_threads: int = 8,
        max_batch: int = 2000,
        bulk_statements: BulkStatements | None = None,
        read_timeout: float = 35.0,
    ) -> None:
        self.engine = engine
        self.read_timeout = read_timeout
        self._bulk_factories = dict(bulk_statements or {})
        self._bulk_compiled: dict[str, Executable] = {}
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.read_limiter = trio.CapacityLimiter(read_threads)
        self._write_limiter = trio.CapacityLimiter(1)
        self.max_batch = max_batch
        self._ops: list[_Op] = []
        self._latest: dict[Hashable, _Op] = {}
        self._wake = trio.Event()
        self._running = False
        self._stopping = False
        self.batches = 0
        self.writes = 0
        self.retried = 0  # latest writes put back after an outage
        self.retry_seconds = 0.5  # the first back-off; doubles up to max_retry_seconds
        self.max_retry_seconds = 5.0
        self._backoff = 0.0
        self._reads: list[_Read] = []
        self._read_wake = trio.Event()
        self._grouping = False  # the group reader runs (inside run_writer)
        self.read_groups = 0
        self.outage = OutageLog(log)  # one line per outage, not one per failed request

    # ------------------------------------------------------------------ reads
    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run fn(session) in a worker thread, in its own read transaction.

        A hung server never answers, and a pooled connection's statement_timeout is the server's own
        to enforce: after read_timeout s the thread is abandoned (it ends when the server wakes) and
        DatabaseHungError says so, instead of the caller waiting as long as the database does.
        """
        with trio.move_on_after(self.read_timeout):
            try:
                result = await trio.to_thread.run_sync(
                    self._read_sync, fn, limiter=self.read_limiter, abandon_on_cancel=True
                )
            except Exception as exc:
                self._note(exc, "read")
                raise
            self.outage.answered()
            return result
        hung = DatabaseHungError(f"no answer from the database within {self.read_timeout:g} s")
        self._note(hung, "read")
        raise hung

    def _note(self, exc: BaseException, where: str) -> None:
        if is_outage(exc):
            self.outage.failed(where, exc)

    def log_failure(self, exc: BaseException, where: str, logger: logging.Logger, message: str, *args: Any) -> None:
        """A background task's failure: the database being unreachable is logged once per outage (OutageLog),
        anything else with its traceback, every time."""
        if is_outage(exc):
            self.outage.failed(where, exc)
        else:
            logger.error(message, *args, exc_info=exc)

    def _read_sync(self, fn: Callable[[Session], T]) -> T:
        with self.sessions() as session, session.begin():
            return fn(session)

    async def read_grouped(self, fn: Callable[[Session], T]) -> T:
        """Like read(), for the OCPP hot path's small look-ups (Authorize's id tag): the reads waiting at
        one moment share one worker-thread hand-off and one session, each in its own transaction.

        A hand-off costs the event loop more than such a read does (trio's thread start, the wake-up
        and re-taking the GIL); grouped, 300 Authorizes a second cost tens of hand-offs, not 300.
        Falls back to read() while the group reader is not running (before run_writer, in tools).
        """
        if not self._grouping:
            return await self.read(fn)
        op = _Read(fn)
        self._reads.append(op)
        self._read_wake.set()
        with trio.move_on_after(self.read_timeout):
            await op.done.wait()
            if op.error is not None:
                self._note(op.error, "read")
                raise op.error
            self.outage.answered()
            return op.result
        op.abandoned = True
        hung = DatabaseHungError(f"no answer from the database within {self.read_timeout:g} s")
        self._note(hung, "read")
        raise hung

    async def _run_group_reader(self) -> None:
        try:
            while True:
                await self._read_wake.wait()
                self._read_wake = trio.Event()
                ops, self._reads = self._reads[: self.max_batch], self._reads[self.max_batch :]
                if self._reads:
                    self._read_wake.set()
                ops = [op for op in ops if not op.abandoned]
                if not ops:
                    continue
                await trio.to_thread.run_sync(self._read_group, ops, limiter=self.read_limiter, abandon_on_cancel=True)
                self.read_groups += 1
                for op in ops:
                    op.done.set()
        finally:
            self._grouping = False
            for op in self._reads:
                op.error = DatabaseClosedError("the database reader stopped")
                op.done.set()
            self._reads = []

    def _read_group(self, ops: list[_Read]) -> None:
        """Each read in its own transaction on one session: one failing read fails alone."""
        with self.sessions() as session:
            for op in ops:
                try:
                    with session.begin():
                        op.result = op.fn(session)
                except Exception as exc:
                    op.error = exc

    async def ping(self, *, timeout: float) -> str | None:
        """None when the database answers SELECT 1 within timeout; else why not (for /health)."""
        from sqlalchemy import text

        with trio.move_on_after(timeout):
            try:
                await trio.to_thread.run_sync(
                    self._read_sync, lambda s: s.execute(text("SELECT 1")), abandon_on_cancel=True
                )
            except Exception as exc:
                self._note(exc, "health")
                return str(exc).splitlines()[0][:200]
            self.outage.answered()
            return None
        self._note(DatabaseHungError(f"no answer to SELECT 1 within {timeout:g} s"), "health")
        return f"no answer to SELECT 1 within {timeout:g} s"

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        """Blocking one-shot unit of work, for CLI commands and start-up (not the hot path)."""
        with self.sessions() as session, session.begin():
            return fn(session)

    # ----------------------------------------------------------------- writes
    async def write(self, fn: Callable[[Session], T]) -> T:
        """Queue fn and wait until its commit is on disk; returns fn's result."""
        op = self._enqueue(fn, durable=True)
        assert op.done is not None
        await op.done.wait()
        if op.error is not None:
            self._note(op.error, "write")
            raise op.error
        return op.result

    def submit(self, fn: Work) -> None:
        """Queue fn for the next commit without waiting (failures are logged)."""
        self._enqueue(fn, durable=False)

    def submit_latest(self, key: Hashable, fn: Work | BulkWrite, *, order: Any = None) -> None:
        """Like submit, but a newer write with the same key replaces a queued one.

        Newer is by arrival, or by `order` when given: a write whose order is below the queued
        one's is dropped (a meter sample stamped earlier than the one already waiting). Keys
        must name everything the write is about (a meter sample's charge point too), or one
        sender's write displaces another's.
        A BulkWrite (kind registered at construction) joins the batch's executemany of its kind.
        """
        if not self._running or self._stopping:
            raise DatabaseClosedError("the database writer is not running")
        queued = self._latest.get(key)
        if queued is not None and order is not None and queued.order is not None and order < queued.order:
            return
        self._latest[key] = _Op(fn, durable=False, order=order, key=key)
        self._wake.set()

    def _enqueue(self, fn: Work, *, durable: bool) -> _Op:
        if not self._running or self._stopping:
            raise DatabaseClosedError("the database writer is not running")
        op = _Op(fn, durable)
        self._ops.append(op)
        self._wake.set()
        return op

    @property
    def queued(self) -> int:
        return len(self._ops) + len(self._latest)

    async def run_writer(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """The writer task: commit whatever is queued, batch after batch, until cancelled.

        On cancellation it flushes what is still queued (shielded), so a
        graceful shutdown loses no accepted write.
        """
        async with trio.open_nursery() as readers:
            self._grouping = True
            readers.start_soon(self._run_group_reader)  # read_grouped()'s hand-offs
            self._running = True
            task_status.started()
            try:
                while True:
                    await self._wake.wait()
                    await self._flush()
            finally:
                self._stopping = True
                with trio.CancelScope(shield=True):
                    while self._ops or self._latest:
                        await self._flush()
                self._running = False
                readers.cancel_scope.cancel()

    async def _flush(self) -> None:
        self._wake = trio.Event()
        ops, self._ops = self._ops[: self.max_batch], self._ops[self.max_batch :]
        if self._latest and len(ops) < self.max_batch:
            ops.extend(self._latest.values())
            self._latest = {}
        if self._ops or self._latest:
            self._wake.set()
        if not ops:
            return
        # Shielded: these ops are already taken off the queue, and a commit
        # that has started must finish before anyone is told about it.
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._apply, ops, limiter=self._write_limiter)
        self.batches += 1
        self.writes += len(ops)
        retry = []
        if any(op.error is None for op in ops):
            self.outage.answered()
        for op in ops:
            if op.done is not None:
                op.done.set()
            elif op.error is not None and op.key is not None and is_outage(op.error):
                retry.append(op)
            elif op.error is not None:
                log.error("db.write_failed error=%r", op.error)
        if retry:
            await self._retry_later(retry)
        else:
            self._backoff = 0.0

    async def _retry_later(self, ops: list[_Op]) -> None:
        """Put failed latest writes back (unless a newer one for the key came meanwhile), then back off."""
        if self._stopping:  # the last flush at shutdown: the database is gone, say what is lost
            log.error("db.write_failed latest writes lost at shutdown=%d error=%r", len(ops), ops[0].error)
            return
        began = ops[0].error is not None and self.outage.failed("write", ops[0].error)
        kept = 0
        for op in ops:
            op.error = None
            if op.key not in self._latest:
                self._latest[op.key] = op
                kept += 1
        self.retried += kept
        self._backoff = min(self.max_retry_seconds, self._backoff * 2 or self.retry_seconds)
        log.log(
            logging.WARNING if began else logging.DEBUG,  # each retry of one outage is not news
            "db.unavailable requeued=%d latest writes waiting=%d retry_in=%.1fs",
            kept,
            len(self._latest),
            self._backoff,
        )
        self._wake.set()
        await trio.sleep(self._backoff)

    def _apply(self, ops: list[_Op]) -> None:
        """One commit for the whole batch; if it fails, each op alone (isolates the bad one)."""
        try:
            with self.sessions() as session, session.begin():
                results = self._run(session, ops)
        except Exception as exc:
            if len(ops) == 1 or is_outage(exc):  # an outage fails them all alike: no use trying one by one
                for op in ops:
                    op.error = exc
                return
            for op in ops:
                self._apply([op])
            return
        for op, result in zip(ops, results, strict=True):
            op.result = result

    def _run(self, session: Session, ops: list[_Op]) -> list[Any]:
        """Latest-value writes first (they record what charge points said before or while the
        other ops were queued, e.g. the meter sample a force-end must bill from), then the rest."""
        bulk: dict[str, list[dict[str, Any]]] = {}
        for op in ops:
            if isinstance(op.fn, BulkWrite):
                bulk.setdefault(op.fn.kind, []).append(op.fn.params)
        for kind, rows in bulk.items():
            session.connection().execute(self._bulk_statement(kind), rows)
        return [None if isinstance(op.fn, BulkWrite) else op.fn(session) for op in ops]

    def _bulk_statement(self, kind: str) -> Executable:
        stmt = self._bulk_compiled.get(kind)
        if stmt is None:
            stmt = self._bulk_compiled[kind] = self._bulk_factories[kind](self.engine.dialect.name)
        return stmt
