"""The web app's database layer on both engines: URLs, migrations, bounded waits."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from image_classifier.monitoring.counts import DriftStore
from image_classifier.monitoring.database import (
    MIGRATIONS,
    Database,
    DatabaseUnavailableError,
    engine_url,
)


@pytest.fixture
def target(database_target) -> str:
    return database_target


def test_heroku_and_standard_postgres_urls_use_psycopg_and_paths_are_sqlite(tmp_path):
    heroku = engine_url("postgres://u:secret@db.example.com:5432/d1")
    standard = engine_url("postgresql://u:secret@db.example.com/d1?sslmode=require")
    assert heroku.drivername == standard.drivername == "postgresql+psycopg"
    assert (heroku.host, heroku.port, heroku.database, heroku.password) == (
        "db.example.com",
        5432,
        "d1",
        "secret",
    )
    assert standard.query == {"sslmode": "require"}
    assert "secret" not in Database("postgres://u:secret@db.example.com/d1").name
    path = engine_url(str(tmp_path / "x.sqlite"))
    assert path.drivername == "sqlite" and path.database == str(tmp_path / "x.sqlite")
    with pytest.raises(ValueError, match="unsupported database URL scheme in 'mysql'"):
        engine_url("mysql://u@h/d")


def schema_versions(target: str) -> list[int]:
    db = Database(target)
    with db.begin() as conn:
        rows = conn.execute(sa.text("SELECT version FROM schema_version ORDER BY version"))
        return [r[0] for r in rows]


def test_schema_is_created_once_and_reopening_changes_nothing(target):
    for _ in range(3):
        Database(target).ensure_schema()
    assert schema_versions(target) == [v for v, _ in MIGRATIONS]


# The barrier the pool's processes meet at: set in each of them by _join (a barrier passes to a
# process only when it starts, not with each task).
_barrier = None


def _join(barrier) -> None:
    global _barrier
    _barrier = barrier


def _start_together(target: str) -> int:
    # Released when all eight have imported everything and are waiting: they open the
    # database together however long each took to start. The timeout only ends a run in
    # which a process never arrived.
    _barrier.wait(timeout=300)
    db = Database(target, timeout_s=5.0)
    db.ensure_schema()
    return len(schema_versions(target))


def test_workers_starting_at_once_migrate_without_racing(target):
    """Eight processes (gunicorn workers of two app instances) open the database at the same
    instant: each migration is applied once and none of them fails."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(8)
    with ProcessPoolExecutor(8, mp_context=context, initializer=_join, initargs=(barrier,)) as pool:
        # A process waits at the barrier holding its task, so the eight tasks run in eight
        # processes at once.
        seen = list(pool.map(_start_together, [target] * 8))
    assert seen == [len(MIGRATIONS)] * 8
    assert schema_versions(target) == [v for v, _ in MIGRATIONS]


def test_a_sqlite_file_from_before_the_versioned_schema_keeps_its_counts(tmp_path):
    path = tmp_path / "drift.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE predictions (model_version TEXT NOT NULL, label TEXT NOT NULL, "
        "bucket INTEGER NOT NULL, count INTEGER NOT NULL, "
        "PRIMARY KEY (model_version, label, bucket))"
    )
    old.execute("INSERT INTO predictions VALUES ('v1', 'cat', 9, 5)")
    old.commit()
    old.close()
    assert DriftStore(Database(str(path))).profile("v1").labels == {"cat": 5}
    assert schema_versions(str(path)) == [v for v, _ in MIGRATIONS]


def connect_params(db: Database) -> list[dict]:
    """What each new connection of `db` is opened with, as the driver receives it."""
    seen: list[dict] = []

    @event.listens_for(db.engine, "do_connect")
    def spy(dialect, record, cargs, cparams) -> None:
        seen.append(dict(cparams))

    return seen


def test_an_unreachable_server_is_reported_with_the_reason(tmp_path):
    db = Database(f"postgresql://nobody@/none?host={tmp_path}", timeout_s=1.0)
    opened = connect_params(db)
    with pytest.raises(DatabaseUnavailableError, match="No such file or directory") as caught:
        db.ensure_schema()
    assert caught.value.public == "the database is unavailable"
    # Each connection carries the bounds: opening, statements and lock waits.
    assert opened and all(p["connect_timeout"] == 1 for p in opened)
    assert opened[0]["options"] == "-c statement_timeout=1000 -c lock_timeout=1000"


def test_a_server_that_never_answers_is_given_up_on_by_the_connect_timeout(tmp_path):
    """A socket that accepts and never replies (a hung server, a dead host's route): the
    connect ends on its own timeout, with that reason."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / ".s.PGSQL.5432"))
    listener.listen(8)
    # Were the timeout not applied the connect would wait for ever: closing the listener
    # after a while ends it with another error, which fails the match below.
    closer = threading.Timer(120, listener.close)
    closer.start()
    try:
        db = Database(f"postgresql://nobody@/none?host={tmp_path}", timeout_s=1.0)
        with pytest.raises(DatabaseUnavailableError, match="timeout expired") as caught:
            db.ensure_schema()
        assert caught.value.public == "the database timed out"
    finally:
        closer.cancel()
        listener.close()


def test_a_stopped_server_fails_fast_and_recovers_when_it_returns(postgres, pg_url):
    db = Database(pg_url, timeout_s=1.0)
    db.ensure_schema()
    postgres.stop()
    try:
        with pytest.raises(DatabaseUnavailableError), db.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
    finally:
        postgres.start()
    with db.begin() as conn:  # the pool replaces its dead connections
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_a_statement_slower_than_the_timeout_is_cancelled(pg_url):
    db = Database(pg_url, timeout_s=0.5)
    with db.begin() as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "500ms"
    # Cancelled by the server at the timeout: the error is PostgreSQL's own, which a statement
    # that ran to its end would never raise.
    with (
        pytest.raises(DatabaseUnavailableError, match="statement timeout") as caught,
        db.begin() as conn,
    ):
        conn.execute(sa.text("SELECT pg_sleep(30)"))
    assert caught.value.public == "the database timed out"


def test_a_busy_pool_makes_callers_wait_no_longer_than_the_timeout(pg_url):
    """Every pooled connection held (2 + 2 overflow a worker): the next caller gets
    DatabaseUnavailableError from the pool's own timeout, not an unbounded wait."""
    db = Database(pg_url, timeout_s=0.5)
    db.ensure_schema()
    assert db.engine.pool.timeout() == 0.5
    held = [db.engine.connect() for _ in range(4)]
    try:
        with pytest.raises(DatabaseUnavailableError) as caught, db.begin():
            pass
        # The pool gave up waiting (SQLAlchemy's TimeoutError), not the server refusing.
        assert isinstance(caught.value.__cause__, sa.exc.TimeoutError)
        assert caught.value.public == "the database is busy (timed out waiting for a connection)"
    finally:
        for conn in held:
            conn.close()


# What an app of the release before the unknown counts wrote (positional, four columns).
EARLIER_UPSERT = sa.text(
    "INSERT INTO predictions VALUES (:version, :label, :bucket, :n) ON CONFLICT "
    "(model_version, label, bucket) DO UPDATE SET count = predictions.count + excluded.count"
)


def test_a_database_of_the_earlier_schema_gains_the_unknown_counts_and_keeps_its_own(
    target, monkeypatch
):
    """Migration 3 on a database at version 2 (both engines): the counts stay, the unknown
    counts start at zero, and an app of the earlier release (a rollback, or an instance not
    yet replaced) still writes its counts."""
    from image_classifier.monitoring import database

    monkeypatch.setattr(database, "MIGRATIONS", MIGRATIONS[:2])
    old = Database(target)
    with old.begin() as conn:
        conn.execute(EARLIER_UPSERT, {"version": "v1", "label": "cat", "bucket": 9, "n": 5})
    old.close()
    assert schema_versions(target) == [1, 2]
    monkeypatch.setattr(database, "MIGRATIONS", MIGRATIONS)

    store = DriftStore(Database(target))
    before = store.profile("v1")
    assert before.labels == {"cat": 5} and before.unknown == 0
    assert schema_versions(target) == [v for v, _ in MIGRATIONS] and MIGRATIONS[2][0] == 3
    store.record("v1", [("cat", 0.95, False)])
    store.flush()
    with Database(target).begin() as conn:
        conn.execute(EARLIER_UPSERT, {"version": "v1", "label": "cat", "bucket": 9, "n": 2})
    after = store.profile("v1")
    assert after.labels == {"cat": 8} and after.unknown == 1
    store.close()


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path):
    """Review and drift reads take no write lock: while another process holds SQLite's
    (a long insert, a migration), they read their snapshot instead of timing out."""
    from image_classifier.monitoring.feedback_store import FeedbackStore

    path = tmp_path / "app.sqlite"
    db = Database(str(path), timeout_s=0.5)
    store = FeedbackStore(db, max_items=10, retention_days=1)
    store.add(b"image bytes", "cat", "dog", 0.9, "v1")
    drift = DriftStore(db)
    drift.record("v1", [("cat", 0.95, True)])
    drift.flush()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # holds the write lock until the end of the test
    writer.execute("INSERT INTO schema_version VALUES (99)")
    try:
        assert store.counts()["pending"] == 1
        [item] = store.items("pending")
        assert store.image(item.id) == b"image bytes"
        assert drift.profile("v1").labels == {"cat": 1}
        with pytest.raises(DatabaseUnavailableError):  # a write still waits, boundedly
            store.review(item.id, "accepted")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        drift.close()
        db.close()


def test_each_database_has_its_own_drift_journal(tmp_path, monkeypatch):
    """The folder where ending workers leave counts for the next one: the same for the same
    database, another for a SQLite file of the same relative name in another folder."""
    from webapp.storage import journal_dir

    monkeypatch.delenv("DRIFT_JOURNAL", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    in_a = journal_dir(Database("var/app.sqlite"))
    assert in_a == journal_dir(Database(str(tmp_path / "a" / "var" / "app.sqlite")))
    monkeypatch.chdir(tmp_path / "b")
    assert journal_dir(Database("var/app.sqlite")) != in_a
    assert journal_dir(Database("postgresql://u@/d1")) != journal_dir(
        Database("postgresql://u@/d2")
    )
    monkeypatch.setenv("DRIFT_JOURNAL", str(tmp_path / "j"))
    assert journal_dir(Database("var/app.sqlite")) == tmp_path / "j"
