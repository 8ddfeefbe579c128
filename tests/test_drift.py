import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from image_classifier import drift
from image_classifier.monitoring import stats
from image_classifier.monitoring.counts import RETRY_EVERY_S, DriftStore, Profile, bucket
from image_classifier.monitoring.database import Database, DatabaseUnavailableError
from image_classifier.params import DriftParams
from webapp import create_app

from conftest import live_server, pattern, png

ROOT = Path(__file__).resolve().parents[1]
LOOSE = DriftParams(min_samples=10)


def profile(labels: dict[str, int], confidence: float = 0.95) -> Profile:
    p = Profile()
    for label, n in labels.items():
        p.add(label, confidence, n)
    return p


def test_psi_is_zero_for_identical_and_grows_with_shift():
    assert sum(stats.psi([10, 20, 30], [20, 40, 60])) == pytest.approx(0, abs=1e-12)
    small = sum(stats.psi([50, 50], [55, 45]))
    large = sum(stats.psi([50, 50], [90, 10]))
    assert 0 < small < 0.05 < large
    # (0.9 - 0.5) ln(0.9/0.5) + (0.1 - 0.5) ln(0.1/0.5)
    assert large == pytest.approx(0.4 * 0.5877867 + 0.4 * 1.6094379, rel=1e-6)


def test_same_distribution_is_not_drift():
    report = stats.compare(profile({"a": 50, "b": 50}), profile({"a": 48, "b": 52}), LOOSE)
    assert not report.drifted and report.class_psi < 0.01


def test_class_shift_and_confidence_drop_are_drift():
    ref = profile({"a": 50, "b": 50})
    shifted = stats.compare(ref, profile({"a": 95, "b": 5}), LOOSE)
    assert shifted.drifted and "class PSI" in shifted.problems[0]
    unsure = stats.compare(ref, profile({"a": 50, "b": 50}, confidence=0.45), LOOSE)
    assert unsure.drifted
    assert unsure.confidence_shift == pytest.approx(0.45 - 0.95, abs=1e-9)
    assert any("mean confidence fell" in p for p in unsure.problems)


def test_too_few_samples_is_not_judged():
    report = stats.compare(profile({"a": 50}), profile({"b": 5}), DriftParams(min_samples=100))
    assert report.problems and not report.drifted
    assert "not enough" in stats.format_report(report, "v1")


@pytest.fixture
def target(database_target) -> str:
    return database_target


def test_store_is_shared_between_workers_and_survives_restart(target):
    worker_a, worker_b = DriftStore(Database(target)), DriftStore(Database(target))
    worker_a.record("v1", [("cat", 0.91), ("dog", 0.55)])
    worker_b.record("v1", [("cat", 0.99)])
    worker_b.record("v2", [("dog", 0.2)])
    worker_a.close()
    worker_b.close()
    restarted = DriftStore(Database(target)).profile("v1")
    assert restarted.labels == {"cat": 2, "dog": 1}
    assert restarted.confidence[bucket(0.91)] == 2 and restarted.confidence[5] == 1
    assert bucket(1.0) == 9


def test_a_workers_counts_stay_in_its_memory_until_it_writes_them(target):
    # An hour: the timer cannot write them during the test, however slow the machine.
    writer = DriftStore(Database(target), flush_every_s=3600)
    reader = DriftStore(Database(target))
    writer.record("v1", [("cat", 0.9), ("dog", 0.1)])
    assert reader.profile("v1").total == 0
    assert writer.profile("v1").labels == {"cat": 1, "dog": 1}  # a worker reads its own
    assert reader.profile("v1").labels == {"cat": 1, "dog": 1}  # ... having written them
    writer.record("v1", [("cat", 0.9)])
    assert reader.profile("v1").labels == {"cat": 1, "dog": 1}
    writer.close()
    assert reader.profile("v1").labels == {"cat": 2, "dog": 1}


def test_a_worker_writes_its_counts_a_flush_interval_later_with_no_more_traffic(target):
    writer = DriftStore(Database(target), flush_every_s=0.3)
    reader = DriftStore(Database(target))
    start = time.monotonic()
    writer.record("v1", [("cat", 0.9), ("dog", 0.1)])
    deadline = start + 10
    while reader.profile("v1").total == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the writer gets no other prediction: only its timer can write
    seen_after = time.monotonic() - start
    assert reader.profile("v1").labels == {"cat": 1, "dog": 1}
    # Not written by record() itself: the timer fires no sooner than its interval (the
    # margin is for the timeout's rounding only).
    assert seen_after >= 0.25


def test_sqlite_locked_by_another_process_keeps_the_counts_in_memory(tmp_path, caplog):
    path = tmp_path / "drift.sqlite"
    other = DriftStore(Database(str(path)))
    other.record("v1", [("dog", 0.5)])
    other.close()
    store = DriftStore(Database(str(path), timeout_s=0.2), flush_every_s=3600)
    store.record("v1", [("cat", 0.9)])
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # what a stuck writer or a backup tool does
    with pytest.raises(DatabaseUnavailableError, match="database is locked"):
        store.profile("v1")
    assert "drift counts kept in memory, not saved" in caplog.text
    locker.execute("ROLLBACK")
    assert store.profile("v1").labels == {"dog": 1, "cat": 1}  # kept, written now
    assert "drift counts saved again" in caplog.text


def test_postgres_restart_delays_the_counts_and_loses_none(postgres, pg_url, caplog, monkeypatch):
    # An hour: only the retry that the failed write schedules can write the counts below.
    store = DriftStore(Database(pg_url, timeout_s=1.0), flush_every_s=3600)
    store.record("v1", [("cat", 0.9)])
    store.flush()
    postgres.stop()
    try:
        with monkeypatch.context() as m:
            # A prediction never waits for the database: recording one does not touch it.
            for name in ("begin", "read", "ensure_schema"):
                m.setattr(store.db, name, lambda *a, name=name: pytest.fail(f"record: {name}"))
            store.record("v1", [("cat", 0.9)] * 3)
        with pytest.raises(DatabaseUnavailableError):
            store.profile("v1")  # its write fails: the counts stay, a retry is scheduled
    finally:
        postgres.start()
    # The retry timer writes them without any further prediction.
    deadline = time.monotonic() + RETRY_EVERY_S + 10
    reader = DriftStore(Database(pg_url))
    while reader.profile("v1").total < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert reader.profile("v1").labels == {"cat": 4}
    store.close()


def test_counts_held_in_memory_are_written_when_the_worker_exits(target):
    """gunicorn workers end with sys.exit (max_requests, SIGTERM), never calling close()."""
    code = (
        "import sys; from image_classifier.monitoring.counts import DriftStore; "
        "from image_classifier.monitoring.database import Database; "
        f"DriftStore(Database({target!r}), flush_every_s=3600).record('v1', [('cat', 0.9)]); "
        "sys.exit(0)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert DriftStore(Database(target)).profile("v1").labels == {"cat": 1}


def write_reference(path, rows):
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "actual", "predicted", "confidence"])
        writer.writerows(rows)


def test_cli_finds_the_database_as_the_web_app_does(target, tmp_path, monkeypatch, capsys):
    """No --db or --database-url: $DATABASE_URL (PostgreSQL) or $DRIFT_DB (SQLite) wins over
    serve.database, as in the web app (monitoring/database.py's app_database)."""
    params = tmp_path / "params.yaml"
    params.write_text(
        f"serve:\n  database: {tmp_path / 'not-this.sqlite'}\ndrift:\n  min_samples: 1\n"
    )
    reference = tmp_path / "predictions.csv"
    write_reference(reference, [(f"{i}.png", "a", "a", 0.97) for i in range(10)])
    store = DriftStore(Database(target))
    store.record("v1", [("a", 0.96)] * 7)
    store.close()
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DRIFT_DB", raising=False)
    monkeypatch.setenv("DATABASE_URL" if "://" in target else "DRIFT_DB", target)
    args = ["--reference", str(reference), "--params", str(params), "--version", "v1"]
    args += ["--model-card", str(tmp_path / "no-model.json")]
    assert drift.main(args) == 0
    assert "model v1: 7 live predictions" in capsys.readouterr().out


def test_cli_reads_the_database_and_exits_1_on_drift(target, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("drift:\n  min_samples: 10\n")
    reference = tmp_path / "predictions.csv"
    write_reference(reference, [(f"{i}.png", "a", "a" if i % 2 else "b", 0.97) for i in range(40)])
    store = DriftStore(Database(target))
    store.record("v1", [("a", 0.96)] * 10 + [("b", 0.95)] * 10)
    store.record("v2", [("a", 0.5)] * 20)
    store.close()
    source = ["--database-url", target] if "://" in target else ["--db", target]
    args = [*source, "--reference", str(reference), "--params", str(params)]
    assert drift.main([*args, "--version", "v1"]) == 0
    assert "no drift" in capsys.readouterr().out
    assert drift.main([*args, "--version", "v2"]) == 1
    out = capsys.readouterr().out
    assert "DRIFT" in out and "class PSI" in out
    assert drift.main([*args[2:], "--db", str(tmp_path / "none.sqlite"), "--version", "v1"]) == 2
    down = f"postgresql://nobody@/none?host={tmp_path}"
    assert drift.main([*args[2:], "--database-url", down, "--version", "v1"]) == 2
    assert "drift: postgresql+psycopg://nobody@/none" in capsys.readouterr().err


def test_web_app_records_counts_and_cli_reads_them_over_http(model_dir, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(f"serve:\n  database: {tmp_path / 'live.sqlite'}\ndrift:\n  min_samples: 5\n")
    app = create_app(model_dir=model_dir, params_file=params)
    client = app.test_client()
    for i in range(6):
        data = {"image": (io.BytesIO(png(pattern(0, i))), "a.png")}
        assert client.post("/api/v1/predict", data=data).status_code == 200
    client.post("/api/v1/predict", data={"image": (io.BytesIO(b"bad"), "x")})  # 422: not counted
    body = client.get("/api/v1/drift").get_json()
    assert body["profile"]["total"] == 6
    version, live = body["model_version"], body["profile"]
    labels = [name for name, n in live["labels"].items() for _ in range(n)]
    confs = [(b + 0.5) / 10 for b, n in enumerate(live["confidence"]) for _ in range(n)]
    same = tmp_path / "same.csv"
    pairs = zip(labels, confs, strict=True)
    write_reference(same, [(i, x, x, c) for i, (x, c) in enumerate(pairs)])
    other = tmp_path / "other.csv"
    write_reference(other, [(i, "elsewhere", "elsewhere", 0.99) for i in range(30)])
    with live_server(app) as url:
        args = ["--url", url, "--version", version]
        # no model card: the reference has no unknown rate to compare (never the repository's)
        args += ["--params", str(params), "--model-card", str(tmp_path / "no-model.json")]
        assert drift.main([*args, "--reference", str(same)]) == 0
        assert f"model {version}: 6 live predictions" in capsys.readouterr().out
        assert drift.main([*args, "--reference", str(other)]) == 1
        assert "elsewhere" in capsys.readouterr().out


def test_many_classes_and_few_samples_do_not_look_like_drift():
    """45 classes, 269 reference and 200 live predictions from one distribution: the plain PSI
    is about (K - 1)(1/n_ref + 1/n_live) = 0.39 by chance alone; the judged PSI is not."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(45) * 5)
    plain, judged, shifted = [], [], []
    shift = 0.75 * p
    shift[0] += 0.25  # a quarter of the traffic moves to one class
    for _ in range(300):
        ref, live = rng.multinomial(269, p), rng.multinomial(200, p)
        plain.append(sum(stats.psi(ref, live)))
        judged.append(stats.corrected_psi(ref, live))
        shifted.append(stats.corrected_psi(rng.multinomial(269, p), rng.multinomial(200, shift)))
    assert np.mean(np.array(plain) > 0.2) > 0.95  # the false alarms this fixes
    assert np.mean(np.array(judged) > 0.2) < 0.01
    assert np.mean(np.array(shifted) > 0.2) > 0.95


# ---- the unknown rate ("none of these") ------------------------------------------------------


def test_unknown_predictions_are_counted_per_version_and_survive_restart(target):
    """Every prediction counts under its top-1 class; the unknown ones also in the version's
    unknown count, on SQLite and PostgreSQL alike."""
    a, b = DriftStore(Database(target)), DriftStore(Database(target))
    a.record("v1", [("cat", 0.9, False), ("cat", 0.9, True), ("dog", 0.5, False)])
    b.record("v1", [("dog", 0.99, False), ("cat", 0.7)])  # a pair counts as known
    b.record("v2", [("cat", 0.9, True)])
    a.close()
    b.close()
    v1 = DriftStore(Database(target)).profile("v1")
    assert v1.labels == {"cat": 3, "dog": 2} and v1.unknown == 3
    assert v1.unknown_rate == pytest.approx(3 / 5)
    assert v1.to_json()["unknown"] == 3 and v1.to_json()["unknown_rate"] == pytest.approx(0.6)
    v2 = DriftStore(Database(target)).profile("v2")
    assert v2.unknown == 0 and v2.unknown_rate == 0.0
    nothing = DriftStore(Database(target)).profile("v3")
    assert nothing.unknown == 0 and nothing.unknown_rate is None


def test_unknown_counts_wait_in_memory_while_the_database_is_locked(tmp_path):
    path = tmp_path / "drift.sqlite"
    store = DriftStore(Database(str(path), timeout_s=0.2), flush_every_s=3600)
    store.record("v1", [("cat", 0.9, False), ("cat", 0.9, True)])
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(DatabaseUnavailableError):
        store.flush()
    locker.execute("ROLLBACK")
    profile = DriftStore(Database(str(path))).profile("v1")
    assert profile.total == 0 and profile.unknown == 0  # nothing half-written
    store.close()
    profile = DriftStore(Database(str(path))).profile("v1")
    assert profile.labels == {"cat": 2} and profile.unknown == 1


def unknown_profile(n: int, unknown: int) -> Profile:
    p = profile({"a": n // 2, "b": n - n // 2})
    p.unknown = unknown
    return p


def test_a_jump_in_the_unknown_rate_is_drift():
    ref = unknown_profile(200, 10)  # 5 % on the test split
    same = stats.compare(ref, unknown_profile(200, 14), LOOSE)  # 7 %: within 0.1
    assert not same.drifted and same.live_unknown_rate == pytest.approx(0.07)
    jump = stats.compare(ref, unknown_profile(200, 60), LOOSE)  # 30 %
    assert jump.drifted and jump.class_psi < 0.01  # the classes alone would not say it
    assert jump.problems == ["unknown rate 30.0% vs 5.0% (test split): +0.250 > 0.1"]
    text = stats.format_report(jump, "v1")
    assert "unknown rate (none of these) 30.0% live vs 5.0% (test split); change +0.250" in text
    strict = DriftParams(min_samples=10, max_unknown_rate_increase=0.01)
    assert stats.compare(ref, unknown_profile(200, 14), strict).drifted
    fewer = stats.compare(ref, unknown_profile(200, 0), LOOSE)
    assert not fewer.drifted  # fewer unknowns than on the test split is not drift


def test_without_a_known_column_the_design_rate_is_the_reference():
    ref = profile({"a": 100, "b": 100})
    ref.unknown = None
    report = stats.compare(ref, unknown_profile(200, 40), LOOSE, design_unknown_rate=0.05)
    assert report.reference_unknown_rate == 0.05 and report.drifted
    assert "(design: 1 - ood.accept)" in report.problems[0]
    assert not stats.compare(ref, unknown_profile(200, 40), LOOSE).drifted  # nothing to judge
    old_app = Profile.from_json({"total": 2, "labels": {"a": 2}, "confidence": [0] * 9 + [2]})
    assert old_app.unknown is None and old_app.unknown_rate is None
    report = stats.compare(unknown_profile(200, 10), old_app, DriftParams(min_samples=1))
    assert not report.problems
    assert "unknown rate (none of these): not counted by the app" in stats.format_report(
        report, "v1"
    )


def write_known_reference(path, rows):
    """predictions.csv as the evaluate stage writes it with a detector: `known` as pandas
    writes booleans."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "actual", "predicted", "confidence", "known", "ood_score"])
        writer.writerows(rows)


def test_reference_reads_the_known_column(tmp_path):
    path = tmp_path / "predictions.csv"
    write_known_reference(
        path, [(f"{i}.png", "a", "a", 0.9, "False" if i < 3 else "True", -1.0) for i in range(20)]
    )
    ref = stats.reference_profile(path)
    assert ref.total == 20 and ref.unknown == 3 and ref.unknown_rate == pytest.approx(0.15)
    write_reference(plain := tmp_path / "plain.csv", [("x.png", "a", "a", 0.9)])
    assert stats.reference_profile(plain).unknown is None
    write_known_reference(path, [("x.png", "a", "a", 0.9, "maybe", -1.0)])
    with pytest.raises(ValueError, match=r"predictions.csv:2: known must be true or false"):
        stats.reference_profile(path)


def test_cli_compares_the_live_unknown_rate_with_the_test_splits(target, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("drift:\n  min_samples: 10\n  max_unknown_rate_increase: 0.2\n")
    reference = tmp_path / "predictions.csv"
    rows = [(f"{i}.png", "a", "a" if i % 2 else "b", 0.97, i % 10 != 0) for i in range(40)]
    write_known_reference(reference, [(*r, -1.0) for r in rows])  # 10 % unknown
    store = DriftStore(Database(target))
    traffic = [("a", 0.96), ("b", 0.95)] * 10
    store.record("v1", [(label, c, i % 5 != 0) for i, (label, c) in enumerate(traffic)])  # 20 %
    store.record("v2", [(label, c, i % 2 == 0) for i, (label, c) in enumerate(traffic)])  # 50 %
    store.close()
    card = tmp_path / "model.json"
    card.write_text(json.dumps({"version": "v1", "ood": {"accept": 0.95}}))
    source = ["--database-url", target] if "://" in target else ["--db", target]
    args = [*source, "--reference", str(reference), "--params", str(params)]
    args += ["--model-card", str(card)]
    assert drift.main([*args, "--version", "v1"]) == 0
    out = capsys.readouterr().out
    assert "unknown rate (none of these) 20.0% live vs 10.0% (test split)" in out
    assert drift.main([*args, "--version", "v2"]) == 1
    assert (
        "DRIFT: unknown rate 50.0% vs 10.0% (test split): +0.400 > 0.2" in capsys.readouterr().out
    )
    # predictions.csv without the column: the reference is the detector's design rate.
    write_reference(reference, [(f"{i}.png", "a", "a" if i % 2 else "b", 0.97) for i in range(40)])
    assert drift.main([*args, "--version", "v1"]) == 0  # 20 % vs 5 %: within 0.2
    assert "20.0% live vs 5.0% (design: 1 - ood.accept)" in capsys.readouterr().out
    assert drift.main([*args]) == 0  # the version comes from --model-card
    assert "model v1: 20 live predictions" in capsys.readouterr().out


def test_web_app_counts_unknown_predictions_and_the_cli_reads_them_over_http(
    model_dir, tmp_path, capsys
):
    """The fixture model's own detector: training patterns and blank images through the app;
    /api/v1/drift gives the unknown count and rate, and the CLI judges them."""
    from PIL import Image

    from image_classifier.litert.classifier import Classifier

    params = tmp_path / "params.yaml"
    params.write_text(f"serve:\n  database: {tmp_path / 'live.sqlite'}\ndrift:\n  min_samples: 5\n")
    app = create_app(model_dir=model_dir, params_file=params)
    client = app.test_client()
    blank = png(Image.new("L", (12, 12), 255))
    examples = sorted((model_dir / "examples").glob("*.png"))
    uploads = [p.read_bytes() for p in examples] + [blank] * 3
    for data in uploads:
        res = client.post("/api/v1/predict", data={"image": (io.BytesIO(data), "x.png")})
        assert res.status_code == 200
    client.post("/example/0")  # the page's examples are not traffic
    clf = Classifier.from_dir(model_dir)
    expected = sum(not clf.run(clf.preprocess(d)[None]).known[0] for d in uploads)
    assert expected == 3  # the blank images
    live = client.get("/api/v1/drift").get_json()["profile"]
    assert live["total"] == 6 and live["unknown"] == 3 and live["unknown_rate"] == 0.5
    version = client.get("/api/v1/model").get_json()["version"]
    reference = tmp_path / "predictions.csv"
    labels = [name for name, n in live["labels"].items() for _ in range(n)]
    confs = [(b + 0.5) / 10 for b, n in enumerate(live["confidence"]) for _ in range(n)]
    rows = [(i, x, x, c, "True") for i, (x, c) in enumerate(zip(labels, confs, strict=True))]
    write_known_reference(reference, [(*r, -1.0) for r in rows])  # nothing unknown on test
    with live_server(app) as url:
        args = ["--url", url, "--params", str(params), "--reference", str(reference)]
        assert drift.main([*args, "--model-card", str(model_dir / "model.json")]) == 1
        out = capsys.readouterr().out
        assert f"model {version}: 6 live predictions" in out
        assert "DRIFT: unknown rate 50.0% vs 0.0% (test split)" in out
