"""A private PostgreSQL for tests that stop, hang or restart their database.

`initdb` into the test's folder, its own port, trust auth, fsync off: the machine's shared
cluster is never touched. `pause()`/`resume()` SIGSTOP/SIGCONT the postmaster and every
backend, which is what a hung database server looks like to a client (TCP still accepts,
nothing answers).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

__all__ = ["PrivatePostgres", "PostgresControlError", "pg_bin", "private_postgres"]


class PostgresControlError(RuntimeError):
    """pg_ctl failed; the message carries what it said."""


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for version in ("17", "16", "15", "14"):
        path = f"/usr/lib/postgresql/{version}/bin/{name}"
        if os.path.exists(path):
            return path
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        out = subprocess.run(_as_postgres([pg_bin("pg_ctl"), *args]), capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise PostgresControlError(f"pg_ctl {args[0]} failed ({out.returncode}): {out.stdout}{out.stderr}")

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            os.chmod(self.folder, 0o755)
            for parent in self.folder.parents:  # postgres must reach its folder
                if str(parent).startswith("/tmp/") and parent.stat().st_mode & 0o001 == 0:
                    os.chmod(parent, parent.stat().st_mode | 0o011)
        subprocess.run(
            _as_postgres([pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self._run(
            "start",
            "-D",
            str(self.data),
            "-w",
            "-l",
            str(self.folder / "pg.log"),
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
        )

    def stop(self) -> None:
        self._run("stop", "-D", str(self.data), "-m", "fast", "-w")

    def processes(self) -> list[psutil.Process]:
        """The postmaster (first line of postmaster.pid) and all its children (backends, workers)."""
        postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
        return [postmaster, *postmaster.children(recursive=True)]

    def pause(self) -> int:
        """SIGSTOP the whole instance: a hung database. Returns how many processes were stopped."""
        procs = self.processes()
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        return len(procs)

    def resume(self) -> None:
        """SIGCONT the whole instance (also the processes a pause stopped that have children since)."""
        for p in self.processes():
            try:
                p.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass


def private_postgres() -> Iterator[PrivatePostgres]:
    """Body of a fixture: an initdb'd, started instance, resumed, stopped and removed afterwards.

    Its folder is a fresh one right under /tmp, not pytest's tmp_path: pytest sets its base folder
    (/tmp/pytest-of-USER) back to 0700 whenever another pytest starts, which locks out the postgres
    user mid-test (pg_ctl: "could not access directory ... Permission denied").
    """
    if pg_bin("initdb") is None or pg_bin("pg_ctl") is None:
        pytest.skip("needs PostgreSQL's initdb and pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="unstuck-pg-"))
    pg = PrivatePostgres(folder / "pg")
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        try:
            pg.resume()  # a paused instance would not stop
        except (OSError, psutil.Error, ValueError):
            pass
        try:
            pg.stop()
        except PostgresControlError:
            pass
        shutil.rmtree(folder, ignore_errors=True)
