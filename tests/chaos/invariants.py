"""What the chaos tests check from the data after a kill and its recovery, and the pieces they
share: the kill of a process group, the wait for a DB condition, concurrent writers.

Breezeway: every natural key present before is present after (and every writer's key); no
duplicate key; the six constraints valid and no INVALID index; the rows the keep rule keeps
are exactly the original rows left; removed rows exactly in the backup (by id and content); a
rollback restores every row by id and content. Telemetry: every id kept, no duplicate id, the
keep rule's row kept, no INVALID index.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from dupguard.breezeway.config import CHILD_TABLES


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 120, every: float = 0.02) -> Any:
    """Poll ``probe`` until it returns something truthy; that value. Fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s whole process group (it was started with ``start_new_session``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def backends(conn, app_like: str) -> list[dict[str, Any]]:
    """Sessions whose application_name is LIKE ``app_like``: pid, state, the statement's start."""
    rows = conn.execute("SELECT pid, state, left(query, 60) FROM pg_stat_activity WHERE application_name LIKE %s "
                        "AND pid <> pg_backend_pid()", (app_like,)).fetchall()
    return [{"pid": p, "state": s, "query": q} for p, s, q in rows]


def wait_backends_gone(conn, pids: list[int], timeout: float = 120) -> float:
    """Seconds until none of ``pids`` is in pg_stat_activity: a dead client's backend ends when
    its statement has finished (its transaction aborted) or at once when it was idle."""
    t0 = time.monotonic()
    wait_until(f"backends {pids} of the killed process to end", lambda: not pids or not conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0], timeout, 0.05)
    return round(time.monotonic() - t0, 2)


# --- Breezeway ----------------------------------------------------------------------------
def bw_rows(conn, table: str, source: str = "breezeway") -> dict[int, tuple]:
    """Every row of ``breezeway.<table>`` (or of ``dupguard.bw_backup_<table>``) by id."""
    ident = (sql.Identifier("breezeway", table) if source == "breezeway"
             else sql.Identifier("dupguard", f"bw_backup_{table}"))
    rows = {r[0]: tuple(r) for r in conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(ident))}
    conn.commit()
    return rows


def bw_snapshot(conn) -> dict[str, dict[int, tuple]]:
    return {t.name: bw_rows(conn, t.name) for t in CHILD_TABLES}


def bw_keys(conn, table: str) -> set[tuple]:
    t = next(t for t in CHILD_TABLES if t.name == table)
    k1, k2 = (sql.Identifier(k) for k in t.natural_key)
    keys = {tuple(r) for r in conn.execute(sql.SQL("SELECT DISTINCT {}, {} FROM {} WHERE {} IS NOT NULL AND {} IS NOT "
                                                   "NULL").format(k1, k2, sql.Identifier("breezeway", table), k1, k2))}
    conn.commit()
    return keys


def bw_invalid_indexes(conn) -> list[str]:
    rows = conn.execute("SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                        "WHERE c.relnamespace = 'breezeway'::regnamespace AND NOT i.indisvalid").fetchall()
    conn.commit()
    return [r[0] for r in rows]


def bw_valid_constraints(conn) -> set[str]:
    rows = conn.execute("SELECT c.conname FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid "
                        "WHERE c.contype = 'u' AND c.connamespace = 'breezeway'::regnamespace AND i.indisvalid"
                        ).fetchall()
    conn.commit()
    return {r[0] for r in rows}


def check_migrated(conn, before: dict[str, dict[int, tuple]], keep: dict[str, set[int]],
                   writer: "EtlWriter | None" = None) -> dict[str, int]:
    """The migration's invariants after a kill and its recovery; rows removed per table."""
    written = writer.rows if writer else {}
    removed = {}
    for t in CHILD_TABLES:
        now, backup = bw_rows(conn, t.name), bw_rows(conn, t.name, "backup")
        every = {**before[t.name], **written.get(t.name, {})}
        keys_before = {(r[1], r[2]) for r in every.values() if None not in (r[1], r[2])}
        assert keys_before <= bw_keys(conn, t.name), f"{t.name}: a natural key lost"   # columns 1, 2: the key
        assert {i for i in now if i in before[t.name]} == keep[t.name], f"{t.name}: kept rows differ from the rule"
        assert all(now[i] == before[t.name][i] for i in keep[t.name]), f"{t.name}: a kept row changed"
        assert not set(now) & set(backup), f"{t.name}: rows both kept and backed up"
        assert set(now) | set(backup) >= set(every), f"{t.name}: rows neither kept nor in the backup"
        assert all(backup[i] == every[i] for i in backup if i in every), f"{t.name}: backup differs from the row"
        assert set(backup) <= set(every), f"{t.name}: the backup holds rows that never existed"
        removed[t.name] = len(backup)
        k1, k2 = (sql.Identifier(k) for k in t.natural_key)
        dups = conn.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {k1} IS NOT NULL AND {k2} IS NOT NULL "
                                    "GROUP BY {k1}, {k2} HAVING count(*) > 1) d").format(
            sql.Identifier("breezeway", t.name), k1=k1, k2=k2)).fetchone()[0]
        conn.commit()
        assert dups == 0, f"{t.name}: {dups} duplicated keys"
    expected = {t.constraint for t in CHILD_TABLES} | {"task_tags_unique"}
    assert bw_valid_constraints(conn) >= expected, bw_valid_constraints(conn)
    assert bw_invalid_indexes(conn) == []
    return removed


def check_rolled_back(conn, before: dict[str, dict[int, tuple]], writer: "EtlWriter | None" = None) -> None:
    """Every original row back (same id, same values), every writer row present, nothing else."""
    written = writer.rows if writer else {}
    for t in CHILD_TABLES:
        now = bw_rows(conn, t.name)
        every = {**before[t.name], **written.get(t.name, {})}
        assert now == every, (f"{t.name}: rollback not exact: missing {sorted(set(every) - set(now))[:5]}, "
                              f"extra {sorted(set(now) - set(every))[:5]}, "
                              f"changed {[i for i in every if i in now and now[i] != every[i]][:5]}")
    assert bw_valid_constraints(conn) == {"task_tags_unique"}


def _assert_key_columns() -> None:
    """check_migrated reads the natural key as columns 1 and 2 (after id) of every child table."""
    from tools.demo_breezeway import NATURAL, PARENT, PARENT_COL

    for t in CHILD_TABLES:
        assert t.natural_key == (PARENT_COL[PARENT[t.name]], NATURAL[t.name]), t


_assert_key_columns()


class Writer(threading.Thread):
    """A writer that keeps inserting while a workflow runs (and is killed): ``write(conn, n)`` is one
    insert; an ``OperationalError`` (a lock, a restart) is retried later as a client would, any
    other error is kept in ``errors`` for the test. ``halt()`` stops it."""

    APP = "chaos-writer"
    PAUSE_S = 0.01

    def __init__(self, dsn: str, seed: int):
        super().__init__(daemon=True)
        self.dsn, self.seed, self.rng = dsn, seed, random.Random(seed)
        self.stop = threading.Event()
        self.errors: list[str] = []

    def write(self, conn, n: int) -> None:
        raise NotImplementedError

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name=self.APP) as c:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    self.write(c, n)
                except psycopg.OperationalError:
                    time.sleep(0.05)
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    self.errors.append(str(exc))
                time.sleep(self.PAUSE_S)

    def halt(self) -> None:
        self.stop.set()
        self.join(30)


class EtlWriter(Writer):
    """The old ETL statement (``INSERT ... ON CONFLICT DO NOTHING``, no conflict target) into
    ``task_requirements`` while the migration runs: copies of existing keys and new keys.
    ``rows``: every row it inserted (``RETURNING *``), by table and id."""

    TABLE = "task_requirements"
    APP = "chaos-etl"
    PAUSE_S = 0.03

    def __init__(self, dsn: str, existing: list[tuple], seed: int):
        super().__init__(dsn, seed)
        self.existing = existing
        self.rows: dict[str, dict[int, tuple]] = {self.TABLE: {}}

    def write(self, conn, n: int) -> None:
        # a copy of an existing key every 4th write: at this rate the constraints step's clean-and-retry
        # wins on a loaded machine (a faster duplicating ETL exhausts its attempts: the runbook entry
        # "build failed after every attempt")
        key = self.rng.choice(self.existing) if n % 4 == 0 else (1 + n % 40, 700_000 + self.seed % 1000 * 1000 + n)
        row = conn.execute("INSERT INTO breezeway.task_requirements (task_pk, requirement_id, name, created_at) "
                           "VALUES (%s, %s, 'etl writer', now()) ON CONFLICT DO NOTHING RETURNING *", key).fetchone()
        if row:
            self.rows[self.TABLE][row[0]] = tuple(row)
