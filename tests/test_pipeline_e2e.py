"""End to end: `dvc repro` in a temporary copy of the repository, on a tiny messy dataset.

Follows the README's "your own images" path (drop the sample stage, `dvc add data/raw`), then
checks the outputs, that DVC re-runs only what a params edit touches, determinism, and
`dvc exp run -S`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import pattern, png
from fork import assert_learnt, copy_project, set_params, sh
from fork import env as fork_env

TINY = {
    "image": {"size": 12},
    "train": {"epochs": 3, "batch_size": 8, "early_stopping_patience": 2, "min_steps": 30},
    "evaluate": {"gallery_size": 4},
    # The audit on the trained network's features, not audit.folds networks of its own: they
    # would add a quarter to each of this file's repros, for DVC's mechanics. The networks'
    # path, stage and all: test_cross_fit.py.
    "audit": {"retrain_up_to": 0},
}

pytestmark = pytest.mark.slow


def write_tiny_dataset(raw: Path) -> None:
    for label, name in enumerate(["circle", "square", "triangle ▲"]):
        (raw / name).mkdir(parents=True)
        for i in range(12):
            (raw / name / f"img {i}.png").write_bytes(png(pattern(label, i)))
    (raw / "circle" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    # A sound header over cut-off pixels: the split keeps it, prepare skips it.
    (raw / "square" / "cut.png").write_bytes(png(pattern(1, 99))[:60])
    (raw / "square" / ".DS_Store").write_bytes(b"junk")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = copy_project(tmp_path_factory.mktemp("repo"), TINY)
    write_tiny_dataset(repo / "data" / "raw")
    sh(repo, "dvc", "add", "-q", "data/raw")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny dataset")
    sh(repo, "dvc", "repro")
    return repo


def test_repro_writes_every_output(repo):
    report = json.loads((repo / "reports/split.json").read_text())
    skipped = sorted(Path(s["path"]).name for s in report["skipped"])
    assert report["skipped_count"] == 2 and skipped == ["corrupt.png", "cut.png"], skipped
    assert sum(report["totals"].values()) == 36
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    # The patterns are learnt (1.0 on the 6 test images where the majority guess gets 2): at
    # least halfway from chance to perfect, as chance is on each metric.
    assert_learnt(metrics, 3, 0.5)
    assert_learnt(metrics, 3, 0.5, "f1_macro")
    assert metrics["cohen_kappa"] >= 0.5 and metrics["roc_auc_ovr"] >= 0.75  # chance: 0, 0.5
    assert 0 <= metrics["f1_weighted"] <= 1
    card = json.loads((repo / "saved_models/model.json").read_text())
    assert card["classes"] == ["circle", "square", "triangle ▲"]
    assert card["keras_agreement"]["max_prob_diff"] <= 1e-4
    for name in ("confusion.png", "roc.png", "misclassified.png", "predictions.csv",
                 "reliability.csv", "reliability.png", "ood_scores.png", "ood.json"):  # fmt: skip
        assert (repo / "reports/eval" / name).stat().st_size > 0
    assert (repo / "reports/model_card.md").stat().st_size > 0
    assert (repo / "reports/train/plots/metrics/eval/loss.tsv").is_file()
    audit = json.loads((repo / "reports/audit/summary.json").read_text())
    assert audit["images"] == sum(report["totals"][s] for s in ("train", "val"))
    assert audit["probabilities"] == "features"  # audit.retrain_up_to: 0
    kept = json.loads((repo / "saved_models/features.json").read_text())
    assert kept["images"] == audit["images"] and len(kept["store"]) == 64
    assert np.load(repo / "saved_models/features.npy").shape == (0, 0)  # simple_cnn: none kept
    assert {"label_issues", "outliers", "near_duplicate_groups"} <= set(audit)
    header = (repo / "reports/audit/issues.csv").read_text().splitlines()[0]
    assert header == "path,given_label,suggested_label,score,kind"
    assert (repo / "reports/audit/gallery.png").stat().st_size > 0
    assert "up to date" in sh(repo, "dvc", "status")
    shows = sh(repo, "dvc", "plots", "show", "--json")
    assert "Confusion matrix" in shows and "reports/audit/gallery.png" in shows
    assert "Reliability diagram, calibrated (test split)" in shows
    assert "reports/eval/reliability.png" in shows
    shown = sh(repo, "dvc", "metrics", "show")
    assert "label_issues" in shown and "ece" in shown and "ood_auroc" in shown


def test_evaluate_reports_calibration_the_detector_and_a_model_card(repo):
    """Issue 36 as a fork sees it: calibration before and after without any prediction
    changing, the detector on the test split and on the generated out-of-distribution sets
    its params name, predictions.csv's verdicts, and a model card whose numbers are
    metrics.json's."""
    import pandas as pd
    import yaml

    from helpers import check_card

    scores = json.loads((repo / "reports/metrics.json").read_text())
    card = json.loads((repo / "saved_models/model.json").read_text())
    for key in ("ece", "ece_uncalibrated"):
        assert 0 <= scores[key] <= 1, key
    assert scores["log_loss"] >= 0 and scores["log_loss_uncalibrated"] >= 0
    assert scores["temperature"] == pytest.approx(card["calibration"]["temperature"], abs=1e-6)
    # Top-1 unchanged: the raw logits' class is the calibrated probabilities' everywhere.
    with np.load(repo / "reports/test_probabilities.npz") as npz:
        logits, probs = npz["logits"], npz["probabilities"]
    table = pd.read_csv(repo / "reports/eval/predictions.csv")
    assert (logits.argmax(axis=1) == probs.argmax(axis=1)).all()
    assert [card["classes"][i] for i in logits.argmax(axis=1)] == table["predicted"].tolist()
    reliability = pd.read_csv(repo / "reports/eval/reliability.csv")
    assert len(reliability) == 15
    assert reliability["images"].sum() == reliability["images_uncalibrated"].sum() == len(table)
    # The detector's verdicts on the test split, and what they do to accuracy: rejecting
    # images can only drop right answers or wrong ones, so accuracy on the accepted ones is at
    # least what all-right rejections would leave.
    known = table["known"].to_numpy()
    assert known.tolist() == (table["ood_score"] >= card["ood"]["threshold"]).tolist()
    assert scores["test_rejected"] == pytest.approx(1 - known.mean(), abs=1e-6)
    n, rejected = len(table), int((~known).sum())
    if known.any():
        right = (table["actual"] == table["predicted"])[known].mean()
        assert scores["accuracy_known"] == pytest.approx(right, abs=1e-6)
        floor = (scores["accuracy"] * n - rejected) / (n - rejected)
        assert scores["accuracy_known"] >= floor - 1e-6
    # Measured on data the model never saw: every set the params name, as many images each.
    ood = yaml.safe_load((repo / "params.yaml").read_text())["ood"]
    sets = json.loads((repo / "reports/eval/ood.json").read_text())["sets"]
    assert list(sets) == ood["sets"]
    assert all(figures["images"] == ood["images_per_set"] for figures in sets.values())
    assert scores["ood_images"] == ood["images_per_set"] * len(ood["sets"])
    for key in ("ood_auroc", "ood_fpr_at_95_tpr", "ood_rejected", "ood_auroc_msp"):
        assert 0 <= scores[key] <= 1, key
    text = (repo / "reports/model_card.md").read_text(encoding="utf-8")
    assert check_card(text, scores, sets) >= 40
    assert "| **all** |" in text and card["version"] in text


@contextlib.contextmanager
def restored(repo: Path) -> Iterator[None]:
    """Put the repository's pipeline state back afterwards without running it again: dvc.lock,
    the relabel file and the uncached reports from a copy, the cached outputs by `dvc checkout`."""
    saved = Path(tempfile.mkdtemp())
    shutil.copy2(repo / "dvc.lock", saved / "dvc.lock")
    shutil.copy2(repo / "data/relabel.csv", saved / "relabel.csv")
    shutil.copytree(repo / "reports", saved / "reports")
    try:
        yield
    finally:
        shutil.copy2(saved / "dvc.lock", repo / "dvc.lock")
        shutil.copy2(saved / "relabel.csv", repo / "data/relabel.csv")
        shutil.rmtree(repo / "reports")
        shutil.copytree(saved / "reports", repo / "reports")
        shutil.rmtree(saved)
        sh(repo, "dvc", "checkout", "-q", "--force")


def test_a_relabel_reruns_from_the_split_and_a_bad_row_stops_it(repo):
    """data.relabel fixes a label without moving the file; dvc sees the CSV change. A row whose
    image is gone is reported; one naming an unknown class stops the split."""
    with restored(repo):
        relabel_then_a_bad_row(repo)
    assert "up to date" in sh(repo, "dvc", "status")


def relabel_then_a_bad_row(repo: Path) -> None:
    original = (repo / "data/relabel.csv").read_text()
    (repo / "data/relabel.csv").write_text(original + "data/raw/circle/img 1.png,square\n")
    out = sh(repo, "dvc", "repro")
    assert "Running stage 'split'" in out and "Running stage 'audit'" in out
    report = json.loads((repo / "reports/split.json").read_text())
    assert (report["relabelled"], report["dropped"]) == (1, 0)
    # A row whose image is gone (deleted, or renamed by packing) is reported and kept; the
    # split's own report shows it (prepare copies it into reports/split.json).
    (repo / "data/relabel.csv").write_text(original + "data/raw/circle/nope.png,square\n")
    sh(repo, "dvc", "repro", "split")
    report = json.loads((repo / "data/splits/scan.json").read_text())
    assert [r["path"] for r in report["relabel_missing"]] == ["data/raw/circle/nope.png"]
    (repo / "data/relabel.csv").write_text(original + "data/raw/circle/img 1.png,zebra\n")
    env = fork_env()
    failed = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert failed.returncode != 0
    assert "data/relabel.csv:2: unknown class 'zebra'" in failed.stderr + failed.stdout


def test_predict_gives_the_answer_the_model_ships_with_its_example(repo):
    """`make run`'s prediction: the example image export wrote beside the model, through the
    predict CLI (decode_pixels from the file), gets the answer model.json records for it."""
    import csv

    example = json.loads((repo / "saved_models/model.json").read_text())["example"]
    predict = ["python", "-m", "image_classifier.predict", "--no-progress", "--quiet"]
    sh(repo, *predict, "--csv", "p.csv", f"saved_models/{example['file']}")
    with (repo / "p.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    (repo / "p.csv").unlink()
    assert row["label_1"] == example["predicted"]
    assert abs(float(row["prob_1"]) - example["probability"]) <= 1e-4


def test_evaluate_only_param_reruns_evaluate_alone(repo):
    set_params(repo, {"evaluate": {"gallery_size": 2}})
    status = json.loads(sh(repo, "dvc", "status", "--json"))
    assert list(status) == ["evaluate"]
    set_params(repo, TINY)
    assert "up to date" in sh(repo, "dvc", "status")


def test_stray_file_or_resaved_image_does_not_retrain(repo):
    """Only split and prepare read data/raw; the manifests' content hashes stop the rest."""
    image = repo / "data/raw/circle/img 3.png"
    image.write_bytes(image.read_bytes())  # saved again, same bytes, new mtime
    sh(repo, "dvc", "add", "-q", "data/raw")
    assert "up to date" in sh(repo, "dvc", "status")
    (repo / "data/raw/circle/notes.txt").write_text("not an image")
    sh(repo, "dvc", "add", "-q", "data/raw")
    out = sh(repo, "dvc", "repro")
    assert "Running stage 'split'" in out and "Running stage 'prepare'" in out
    for stage in ("train", "evaluate", "export"):
        assert f"Running stage '{stage}'" not in out, out
    report = json.loads((repo / "reports/split.json").read_text())
    assert any(s["path"].endswith("notes.txt") for s in report["skipped"])
    (repo / "data/raw/circle/notes.txt").unlink()
    sh(repo, "dvc", "add", "-q", "data/raw")
    sh(repo, "dvc", "repro")


def test_evaluate_scores_the_probabilities_export_wrote(repo):
    """One LiteRT pass over the test split (in export); evaluate refuses any other file's."""
    card = json.loads((repo / "saved_models/model.json").read_text())
    scores = json.loads((repo / "reports/metrics.json").read_text())
    assert scores["accuracy"] == card["metrics"]["accuracy"]
    saved = repo / "reports/test_probabilities.npz"
    kept = saved.read_bytes()
    with np.load(saved) as npz:
        probs = npz["probabilities"]
    assert probs.shape == (scores["n_test"], 3)
    np.savez(saved, probabilities=probs, tflite_sha256="0" * 64)  # another model's
    env = fork_env()
    cmd = [sys.executable, "-m", "image_classifier.evaluate"]
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    saved.write_bytes(kept)
    assert result.returncode != 0
    assert "is not from saved_models/model.tflite" in result.stdout + result.stderr


def test_export_checks_keras_on_a_seeded_sample_and_scores_the_whole_split(repo):
    n_test = json.loads((repo / "reports/metrics.json").read_text())["n_test"]
    set_params(repo, {"export": {"float32_check_images": 3}})
    out = sh(repo, "dvc", "repro")
    assert "Running stage 'export'" in out
    card = json.loads((repo / "saved_models/model.json").read_text())
    assert card["keras_agreement"]["n_images"] == 3
    assert (
        card["metrics"]["accuracy"]
        == json.loads((repo / "reports/metrics.json").read_text())["accuracy"]
    )
    with np.load(repo / "reports/test_probabilities.npz") as npz:
        assert len(npz["probabilities"]) == n_test
    set_params(repo, TINY | {"export": {"float32_check_images": 100}})
    sh(repo, "dvc", "repro")
    assert "up to date" in sh(repo, "dvc", "status")


def pipeline_outputs(repo: Path) -> dict[str, bytes]:
    """What the stages wrote: every file under data/splits, data/prepared, saved_models and
    reports, the ones that record when or where in memory they were made without that."""
    import zipfile

    out = {}
    for folder in ("data/splits", "data/prepared", "saved_models", "reports"):
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file():
                out[path.relative_to(repo).as_posix()] = path.read_bytes()
    # Keras' zip holds the time it was saved and objects' ids in memory; its weights are
    # the model.
    with zipfile.ZipFile(repo / "saved_models/model.keras") as keras_zip:
        out["saved_models/model.keras"] = keras_zip.read("model.weights.h5")
    card = json.loads(out["saved_models/model.json"])
    del card["created"]
    out["saved_models/model.json"] = json.dumps(card).encode()
    out["reports/model_card.md"] = re.sub(rb"created [0-9T:+-]+", b"", out["reports/model_card.md"])
    train = json.loads(out["reports/train/metrics.json"])
    del train["lr_find"]["seconds"]
    out["reports/train/metrics.json"] = json.dumps(train).encode()
    return out


def test_forced_rerun_is_deterministic(repo):
    """Training is seeded and bit-exact: `dvc repro --force` writes every output again
    byte for byte, from the split's manifests to the test split's probabilities."""
    before = pipeline_outputs(repo)
    with np.load(repo / "reports/test_probabilities.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    sh(repo, "dvc", "repro", "--force")
    with np.load(repo / "reports/test_probabilities.npz") as npz:
        assert sorted(npz.files) == sorted(arrays)
        for name, values in arrays.items():
            assert np.array_equal(npz[name], values), name
    after = pipeline_outputs(repo)
    assert sorted(after) == sorted(before)
    assert [name for name in before if after[name] != before[name]] == []


def test_dvc_exp_run_with_set_param(repo):
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline")
    head = sh(repo, "git", "rev-parse", "HEAD").strip()
    out = sh(repo, "dvc", "exp", "run", "-S", "train.learning_rate=0.01")
    ran = re.search(r"Ran experiment\(s\): (\S+)", out)
    assert ran, out
    rows = json.loads(sh(repo, "dvc", "exp", "show", "--json"))
    (baseline,) = [row for row in rows if row["rev"] == head]
    found = [exp for exp in baseline["experiments"] or [] if exp["name"] == ran[1]]
    assert len(found) == 1, json.dumps(rows)[:3000]
    data = found[0]["revs"][0]["data"]
    params = data["params"]["params.yaml"]["data"]
    assert params["train"]["learning_rate"] == 0.01
    assert type(params["train"]["learning_rate"]) is float
    # The value set, at its key, and nothing else changed from the commit it ran on.
    expected = copy.deepcopy(baseline["data"]["params"]["params.yaml"]["data"])
    assert expected["train"]["learning_rate"] != 0.01
    expected["train"]["learning_rate"] = 0.01
    assert params == expected
    scores = data["metrics"]["reports/metrics.json"]["data"]
    for key in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert_learnt(scores, 3, 0.5, key)  # 1.0 each, measured


def test_web_app_matches_the_pipeline_evaluation(repo, monkeypatch):
    """Train/serve parity: for every test-split file, the web app's probabilities, from the
    uploaded file, equal the evaluate stage's, from the pixels prepare stored (the same .tflite,
    which export checked against Keras), within the export tolerance, and so does the top-1."""
    import base64
    import io

    import pandas as pd

    from webapp import create_app

    monkeypatch.chdir(repo)  # manifest paths are relative to the repository root
    app = create_app(model_dir=repo / "saved_models", params_file=repo / "params.yaml")
    client = app.test_client()
    evaluation = pd.read_csv(repo / "reports/eval/predictions.csv")
    classes = json.loads((repo / "saved_models/model.json").read_text())["classes"]
    assert len(evaluation) == 6
    for _, row in evaluation.iterrows():
        data = Path(row["path"]).read_bytes()
        body = {"instances": [{"b64": base64.b64encode(data).decode()}]}
        kserve = client.post("/v1/models/image-classifier:predict", json=body).json
        probs = kserve["predictions"][0]["probabilities"]
        expected = [row[f"prob_{name}"] for name in classes]
        assert max(abs(a - b) for a, b in zip(probs, expected, strict=True)) <= 1e-4
        form = {"image": (io.BytesIO(data), "x.png")}
        served = client.post("/api/v1/predict", data=form).json["predictions"][0]
        # The same verdict as evaluation's: known or not, with the same score and classes.
        assert served["known"] == bool(row["known"]), row["path"]
        assert served["ood_score"] == pytest.approx(row["ood_score"], rel=1e-5, abs=1e-4)
        ranked = served["top"] if served["known"] else served["closest"]
        assert ranked[0]["label"] == row["predicted"], row["path"]


def test_dvc_remote_round_trip(repo, tmp_path):
    """Share data and models: `dvc push` to a remote (a local folder here; S3, GCS, SSH work
    the same), then in a fresh clone `dvc pull` gives an up-to-date workspace: nothing to
    reproduce, and the very same model."""
    remote = tmp_path / "remote"
    sh(repo, "dvc", "repro")
    sh(repo, "dvc", "remote", "add", "-d", "shared", str(remote))
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "shared remote")
    sh(repo, "dvc", "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    assert not (clone / "saved_models/model.tflite").exists()
    sh(clone, "dvc", "pull")
    assert "up to date" in sh(clone, "dvc", "status")
    assert "Running stage" not in sh(clone, "dvc", "repro")
    for name in ("saved_models/model.tflite", "saved_models/model.keras", "data/prepared/test.npy"):
        assert (clone / name).read_bytes() == (repo / name).read_bytes(), name
    assert_linked_into_cache(clone, "data/raw/**/*", "data/prepared/*.npy")


def assert_linked_into_cache(repo: Path, *patterns: str) -> None:
    """Every file matching the patterns is one of DVC's cache files (same inode), read-only.
    (A file whose bytes the cache already holds under another path stays a copy: the small
    manifests in data/prepared equal data/splits' when no image was skipped.)"""
    cached = {p.stat().st_ino for p in (repo / ".dvc/cache").rglob("*") if p.is_file()}
    for spec in patterns:
        files = [p for p in repo.glob(spec) if p.is_file()]
        assert files, spec
        copies = [p for p in files if p.stat().st_ino not in cached]
        assert not copies, f"{len(copies)} of {len(files)} files are copies: {copies[:3]}"
        assert all(p.stat().st_mode & 0o222 == 0 for p in files), spec


def test_photos_and_store_are_on_disk_once(repo):
    """.dvc/config's cache.type: `dvc add` and `dvc repro` link the photos and the store into
    DVC's cache instead of copying them (bench/scale.py measures the disk this saves), and a
    store re-made with the same bytes, which the cache already holds, is linked too."""
    assert_linked_into_cache(repo, "data/raw/**/*", "data/prepared/*.npy")
    out = sh(repo, "dvc", "repro", "--force", "--single-item", "prepare")
    assert "Running stage 'prepare'" in out
    assert_linked_into_cache(repo, "data/raw/**/*", "data/prepared/*.npy")
    assert "up to date" in sh(repo, "dvc", "status")


# sitecustomize for the stages' processes (put first on PYTHONPATH): a stage writing the folder
# PAUSE_IN_ATOMIC_DIR names stops once its files are in the hidden work folder, before that
# replaces the old one, and writes the work folder's path to PAUSE_MARKER; it waits there to
# be killed.
PAUSE_IN_ATOMIC_DIR = """
import os

if os.environ.get("PAUSE_IN_ATOMIC_DIR"):
    import contextlib
    import signal
    from pathlib import Path

    from image_classifier import atomic

    unpaused = atomic.atomic_dir

    @contextlib.contextmanager
    def atomic_dir(target):
        with unpaused(target) as tmp:
            yield tmp
            if Path(target).name == os.environ["PAUSE_IN_ATOMIC_DIR"]:
                marker = Path(os.environ["PAUSE_MARKER"])
                marker.with_suffix(".part").write_text(str(tmp))
                marker.with_suffix(".part").replace(marker)
                while True:
                    signal.pause()

    atomic.atomic_dir = atomic_dir
"""


def kill_while_writing(repo: Path, folder: str, hooks: Path) -> str:
    """Start `dvc repro`; SIGKILL its whole process group while a stage holds the new `folder`
    in its hidden work folder (atomic.atomic_dir's `.<name>-*`), written but not swapped in."""
    import signal
    import time

    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(PAUSE_IN_ATOMIC_DIR)
    marker = hooks / "paused"
    env = fork_env()
    path = os.pathsep.join(filter(None, [str(hooks), env.get("PYTHONPATH")]))
    env.update(PYTHONPATH=path, PAUSE_IN_ATOMIC_DIR=folder, PAUSE_MARKER=str(marker))
    log = repo / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["dvc", "repro"], cwd=repo, env=env, stdout=out, stderr=out, start_new_session=True
        )
    # Polled: the stage waits at the marker for as long as it takes us to look.
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), f"dvc repro never held {folder} unswapped:\n{log.read_text()}"
    hidden = repo / marker.read_text()  # the stage's cwd is the repository
    assert hidden.name.startswith(f".{folder}-") and any(hidden.iterdir()), hidden
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return log.read_text()


def test_a_killed_prepare_keeps_the_store_and_the_next_repro_restores_it(repo, tmp_path):
    """`dvc repro` killed while prepare decodes at a new image.size: dvc.lock and the cache
    still hold the previous store, bit for bit, and nothing half-written is left where a stage
    reads. Back at the old size, the next repro checks the store out of DVC's run-cache instead
    of decoding again, and no stage runs."""
    sh(repo, "dvc", "repro")
    lock, params = (repo / "dvc.lock").read_text(), (repo / "params.yaml").read_text()
    store = {p.name: p.read_bytes() for p in (repo / "data/prepared").iterdir()}
    with restored(repo):
        set_params(repo, {"image": {"size": 14}})
        kill_while_writing(repo, "prepared", tmp_path / "hooks")
        assert (repo / "dvc.lock").read_text() == lock
        if (repo / "data/prepared").exists():  # the old store, or a whole new one: never a part
            assert {p.name for p in (repo / "data/prepared").iterdir()} == set(store)
        (repo / "params.yaml").write_text(params)
        out = sh(repo, "dvc", "repro")
        assert "Running stage" not in out, out
        assert "Stage 'prepare' is cached" in out, out
        assert {p.name: p.read_bytes() for p in (repo / "data/prepared").iterdir()} == store
        assert (repo / "dvc.lock").read_text() == lock
        assert "up to date" in sh(repo, "dvc", "status")


def stop_queue_workers(repo: Path, wait: float = 15.0) -> None:
    """`dvc queue stop` asks the workers to go; make sure none outlives the test."""
    import time

    import psutil

    def workers() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "queue" in cmd and str(repo) in str(proc.info["cwd"] or ""):
                found.append(proc)
        return found

    deadline = time.monotonic() + wait
    while workers() and time.monotonic() < deadline:
        time.sleep(0.5)
    for proc in workers():
        proc.kill()


def test_queued_experiments_run_two_at_a_time(repo):
    """A grid of experiments queued and run by two workers (`dvc queue start -j 2`); every
    one finishes and `dvc exp show` lists it with its metrics."""
    import time

    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "before the queue", "--allow-empty")
    # A grid over a parameter only evaluate reads: the queue's mechanics, not two trainings.
    sh(repo, "dvc", "exp", "run", "--queue", "-S", "evaluate.gallery_size=2,3")
    # The queue's workers outlive `dvc queue start`: they must not hold a pipe we wait on.
    env = fork_env()
    with (repo / "queue.log").open("w") as log:
        start = ["dvc", "queue", "start", "-j", "2"]
        subprocess.run(start, cwd=repo, env=env, stdout=log, stderr=log, check=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = sh(repo, "dvc", "queue", "status")
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(3)
        else:
            pytest.fail(f"the queue did not finish:\n{status}")
    finally:
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True)
        stop_queue_workers(repo)
    assert "Failed" not in status, status
    rows = json.loads(sh(repo, "dvc", "exp", "show", "--json"))
    found = {}
    for row in rows:
        for exp in row.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                size = data.get("params", {}).get("params.yaml", {}).get("data", {})
                size = size.get("evaluate", {}).get("gallery_size")
                scores = data.get("metrics", {}).get("reports/metrics.json", {}).get("data", {})
                if size in (2, 3):
                    found[size] = scores
    assert set(found) == {2, 3}, json.dumps(rows)[:3000]
    for scores in found.values():
        assert "baseline_linear_accuracy" in scores
        assert_learnt(scores, 3, 0.5)  # the repository's model, 1.0
