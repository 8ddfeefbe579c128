import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_classifier import predict
from image_classifier.litert.classifier import Classifier, ModelLoadError, load_card

from conftest import pattern, png

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(png(pattern(0, 200)))
    (folder / "sub" / "b.png").write_bytes(png(pattern(1, 201)))
    (folder / ".hidden.png").write_bytes(b"ignored")
    (folder / "broken.jpg").write_bytes(b"not really")
    return folder


def test_folder_prediction_table_csv_and_errors(model_dir, images, tmp_path):
    out_csv = tmp_path / "preds.csv"
    args = predict.parse_args(
        [
            str(images),
            "--model-dir",
            str(model_dir),
            "--csv",
            str(out_csv),
            "--top-k",
            "2",
            "--batch-size",
            "1",
            "--no-progress",
        ]
    )
    stdout = io.StringIO()
    status = predict.run(args, out=stdout)
    assert status == 1  # broken.jpg could not be read
    lines = stdout.getvalue().splitlines()
    assert [line.split("\t")[0].rsplit("/", 1)[-1] for line in lines] == ["a.png", "b.png"]
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert list(rows[0]) == ["path", "known", "ood_score", "label_1", "prob_1", "label_2", "prob_2"]
    assert len(rows) == 2
    for row, line in zip(rows, lines, strict=True):
        assert row["label_1"] in ("cat", "crème brûlée", "dog")
        assert 1.0 >= float(row["prob_1"]) >= float(row["prob_2"]) >= 0.0
        assert row["known"] in ("true", "false")
        cells = line.split("\t")
        assert cells[1] == ("known" if row["known"] == "true" else "unknown")
        assert cells[2] == f"ood_score {row['ood_score']}"


def with_threshold(model_dir: Path, dest: Path, threshold: float) -> Path:
    shutil.copytree(model_dir, dest)
    card = json.loads((dest / "model.json").read_text(encoding="utf-8"))
    card["ood"]["threshold"] = threshold
    (dest / "model.json").write_text(json.dumps(card), encoding="utf-8")
    return dest


def run_cli(model: Path, *paths: Path, out_csv: Path) -> tuple[list[dict], list[str]]:
    argv = [*map(str, paths), "--model-dir", str(model), "--csv", str(out_csv), "--no-progress"]
    stdout = io.StringIO()
    assert predict.run(predict.parse_args(argv), out=stdout) == 0
    with out_csv.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh)), stdout.getvalue().splitlines()


def test_known_column_and_score_in_csv_and_table(model_dir, tmp_path):
    """A blank and a noise image score far below the fixture detector's threshold: known
    false, their classes marked closest; the model's own example images are known. The
    score is the one Classifier.run gives; a threshold above every score rejects them all."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_blank.png").write_bytes(png(Image.new("L", (12, 12), 255)))
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), "L")
    (folder / "b_noise.png").write_bytes(png(noise))
    for example in sorted((model_dir / "examples").glob("*.png")):
        shutil.copy(example, folder / f"c_{example.name}")
    rows, lines = run_cli(model_dir, folder, out_csv=tmp_path / "p.csv")
    clf = Classifier.from_dir(model_dir)
    expected = clf.run(np.stack([clf.preprocess(folder / Path(r["path"]).name) for r in rows]))
    assert [r["known"] for r in rows] == ["false", "false", "true", "true", "true"]
    for row, line, score in zip(rows, lines, expected.scores, strict=True):
        assert float(row["ood_score"]) == pytest.approx(float(score), rel=1e-5)
        cells = line.split("\t")
        assert cells[1] == ("known" if row["known"] == "true" else "unknown")
        assert cells[3].startswith("closest: " if row["known"] == "false" else row["label_1"])
    assert all(float(r["ood_score"]) < clf.detector.threshold for r in rows[:2])
    rejecting = with_threshold(model_dir, tmp_path / "rejecting", 1e30)
    rows, lines = run_cli(rejecting, folder, out_csv=tmp_path / "q.csv")
    assert {r["known"] for r in rows} == {"false"} and all("\tunknown\t" in x for x in lines)


def test_a_model_without_a_detector_calls_every_image_known(model_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    card = json.loads((bare / "model.json").read_text(encoding="utf-8"))
    card["ood"] = {}
    (bare / "model.json").write_text(json.dumps(card), encoding="utf-8")
    (bare / "ood.npz").unlink()
    image = tmp_path / "white.png"
    image.write_bytes(png(Image.new("L", (12, 12), 255)))
    rows, lines = run_cli(bare, image, out_csv=tmp_path / "p.csv")
    assert rows[0]["known"] == "true" and rows[0]["ood_score"] == ""
    assert lines[0].split("\t")[1:3] == ["known", "ood_score -"]


def test_batching_does_not_change_results(model_dir, images):
    clf = Classifier.from_dir(model_dir)
    paths = sorted(p for p in images.rglob("*.png") if not p.name.startswith("."))
    one = list(predict.predict_paths(clf, paths, 3, 1, []))
    many = list(predict.predict_paths(clf, paths, 3, 64, []))
    for a, b in zip(one, many, strict=True):
        assert a.path == b.path and a.top[0][0] == b.top[0][0]
        assert abs(a.top[0][1] - b.top[0][1]) < 1e-6


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="run `dvc repro`"):
        load_card(tmp_path / "model.json")


# What a serving deploy runs: every web app module, its gunicorn config, the predict, drift and
# feedback CLIs and the libraries they use. None may load TensorFlow (the serving requirements
# lack it).
MONITORING = ROOT / "src/image_classifier/monitoring"
SERVING_MODULES = [
    *sorted(f"webapp.{p.stem}" for p in (ROOT / "webapp").glob("*.py") if "." not in p.stem),
    "image_classifier.predict",
    "image_classifier.drift",
    "image_classifier.feedback",
    "image_classifier.litert.classifier",
    *sorted(f"image_classifier.monitoring.{p.stem}" for p in MONITORING.glob("[!_]*.py")),
]


def test_serving_modules_and_cli_never_import_tensorflow(model_dir, images):
    code = f"""
import importlib, importlib.util, sys
for name in {SERVING_MODULES!r}:
    importlib.import_module(name)
conf_path = {str(ROOT / "webapp" / "gunicorn.conf.py")!r}
conf = importlib.util.spec_from_file_location("gunicorn_conf", conf_path)
conf.loader.exec_module(importlib.util.module_from_spec(conf))
from image_classifier import predict
status = predict.main([{str(images / "a.png")!r}, "--model-dir", {str(model_dir)!r}])
assert status == 0, status
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
assert not loaded, loaded[:5]
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "a.png" in result.stdout


def test_shards_are_disjoint_and_cover_every_file(model_dir, tmp_path):
    """N machines with --shard 0/N .. N-1/N: each file predicted exactly once, shares about
    even, the same shares wherever the folder is mounted and whatever the listing order."""
    folder = tmp_path / "photos"
    for k in range(5):
        (folder / f"class{k}").mkdir(parents=True)
        for i in range(40):
            (folder / f"class{k}" / f"{i:03d}.png").write_bytes(png(pattern(k % 3, i)))
    everything = {p.relative_to(folder).as_posix() for p in predict.expand_paths([folder])}
    assert len(everything) == 200
    for n in (1, 3, 4):
        shares = []
        for i in range(n):
            out = tmp_path / f"shard{i}of{n}.csv"
            argv = [str(folder), "--model-dir", str(model_dir), "--shard", f"{i}/{n}"]
            argv += ["--csv", str(out), "--quiet", "--no-progress"]
            args = predict.parse_args(argv)
            assert predict.run(args) == 0
            with out.open(encoding="utf-8") as fh:
                rows = [row["path"] for row in csv.DictReader(fh)]
            shares.append({Path(p).relative_to(folder).as_posix() for p in rows})
        assert sum(len(s) for s in shares) == len(everything)  # disjoint ...
        assert set().union(*shares) == everything  # ... and complete
        assert min(len(s) for s in shares) >= 200 / n * 0.6  # no machine left idle
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    again = {p.relative_to(moved).as_posix() for p in predict.expand_paths([moved], (1, 4))}
    assert again == shares[1]


@pytest.mark.parametrize("bad", ["4/4", "-1/2", "1", "a/b", "0/0"])
def test_bad_shard_is_a_clear_error(bad, capsys):
    with pytest.raises(SystemExit):
        predict.parse_args(["x", "--shard", bad])
    assert "--shard" in capsys.readouterr().err
