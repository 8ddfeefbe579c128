"""What several test files share: generated images, a server started from the Procfile, the
pipeline's stages in order, the model card's check against metrics.json. Test files import
this module, never each other."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
import yaml
from PIL import Image

from image_classifier.synthetic import Spec, write_dataset
from image_classifier.training.input_pipeline import ArraySource

from conftest import png
from fork import write_params

ROOT = Path(__file__).resolve().parents[1]


CLASSES = ["red", "green", "blue"]
HUES = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.float32)


def colours(n_per_class: int, size: int, seed: int) -> ArraySource:
    """Noisy images whose class is their colour."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = np.clip(HUES[y][:, None, None, :] + rng.normal(0, 40, (len(y), size, size, 3)), 0, 255)
    return ArraySource(x.astype(np.uint8), y)


def messy_tree(raw: Path) -> None:
    """Mixed formats and modes, a 2000x1500 JPEG (draft decoding), EXIF rotation, 16-bit,
    CMYK, palette GIF, and a JPEG whose pixel data is cut off (its header is fine)."""
    write_dataset(raw, Spec((14, 14, 14), seed=3, fmt="mixed", scale=0.3), workers=1)
    first = raw / "c00_circle"
    big = Image.new("RGB", (2000, 1500), (30, 140, 200))
    big.paste((250, 250, 0), (400, 300, 1200, 900))
    (first / "big.jpg").write_bytes(png(big, "JPEG", quality=90))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (first / "rotated.jpg").write_bytes(png(big.resize((400, 300)), "JPEG", exif=exif))
    sixteen = Image.fromarray(np.linspace(0, 65535, 60 * 40, dtype=np.uint16).reshape(40, 60))
    (first / "sixteen.png").write_bytes(png(sixteen))
    cmyk = Image.new("RGB", (50, 70), (200, 30, 90)).convert("CMYK")
    (first / "cmyk.jpg").write_bytes(png(cmyk, "JPEG"))
    (first / "palette.gif").write_bytes(png(big.resize((80, 60)).convert("P"), "GIF"))
    truncated = png(big, "JPEG", quality=95)
    (raw / "c01_square" / "truncated.jpg").write_bytes(truncated[: len(truncated) // 3])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def procfile_server(model_dir: Path, log: Path, cwd: Path = ROOT, **env: str):
    """The Procfile's web process (honcho) in `cwd` (the repository, or a deploy bundle), on a
    free port, until the block ends."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MODEL_DIR": str(model_dir),
        # the code's defaults unless a test gives its own; never the repository's params.yaml
        "PARAMS_FILE": str(write_params(log.with_suffix(".params.yaml"))),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **env,
    }
    # A file, not a pipe: thousands of request log lines would fill a pipe nobody reads and
    # block the server (and its shutdown).
    proc = subprocess.Popen(
        ["honcho", "start", "-f", "Procfile", "web"],
        cwd=cwd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # a worker still loading
            time.sleep(0.3)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        pytest.fail("server did not become ready:\n" + log.read_text(errors="replace"))
    try:
        yield url, proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def stages() -> tuple:
    """The stage modules a test runs in process, in dvc.yaml's order (the audit, which no
    later stage needs, left out). Imported when called: train and export load TensorFlow."""
    from image_classifier import evaluate, export, prepare, split, train

    return (split, prepare, train, export, evaluate)


# The sections whose numbers are metrics, and what each column of their tables shows: the
# row's metrics.json key (in backticks in the first cell) put into the column's template.
METRIC_SECTIONS = ("Metrics (test split)", "Calibration", "Out-of-distribution behaviour")
COLUMNS = {
    "model": "{}",
    "linear baseline": "baseline_linear_{}",
    "majority baseline": "baseline_majority_{}",
    "before calibration": "{}_uncalibrated",
    "after calibration": "{}",
    "value": "{}",
    "detector": "{}",
    "maximum softmax baseline": "{}_msp",
}
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])")
CODE = re.compile(r"`[^`]*`")


def split_card(text: str) -> tuple[dict, dict[str, list[str]]]:
    """(front matter, {section title: its lines})."""
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    sections: dict[str, list[str]] = {}
    title = None
    for line in body.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = []
        elif title is not None:
            sections[title].append(line)
    return yaml.safe_load(front), sections


def check_shown(text: str, expected) -> None:
    """A cell shows `expected`: whole numbers exactly, others rounded to four places."""
    if expected is None:
        assert text == "–", f"{text!r} shown for a value metrics.json does not have"
        return
    if isinstance(expected, int):
        assert text == str(expected), (text, expected)
        return
    assert re.fullmatch(r"-?\d+\.\d{4}", text), text
    assert float(text) == round(float(expected), 4), (text, expected)


def check_card(text: str, scores: dict, sets: dict) -> int:
    """Every number of the metric sections against metrics.json (`scores`) or ood.json's
    `sets`; returns how many it checked. The model-index's values are metrics.json's exactly."""
    front, sections = split_card(text)
    for entry in front["model-index"][0]["results"][0]["metrics"]:
        assert entry["value"] == scores[entry["type"]], entry
    checked = 0
    for title in METRIC_SECTIONS:
        header = None
        for line in sections[title]:
            if not line.startswith("|"):
                header = None
                assert not NUMBER.search(CODE.sub("", line)), f"{title}: a number in {line!r}"
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if header is None:
                header = cells
                continue
            key = cells[0].strip("`")
            for column, text in zip(header[1:], cells[1:], strict=True):
                if cells[0].startswith("`"):  # a metrics.json key
                    name = COLUMNS[column].format(key)
                    check_shown(text, scores.get(name))
                else:  # a set of ood.json
                    check_shown(text, sets[key].get(column.strip("`")))
                checked += 1
    return checked
