"""Predict with the exported model (LiteRT, no TensorFlow).

    python -m image_classifier.predict PATH... [--top-k 3] [--csv predictions.csv]
                                       [--shard I/N]

PATHs are image files or folders (searched recursively, hidden files ignored). Images are read
in batches, so memory stays bounded however many there are. Unreadable files are reported and
skipped; the exit status is 1 if any were.

Each image gets the model's calibrated top-k classes and its out-of-distribution verdict:
`known` is false for an image that looks like none of the classes (its score, `ood_score`,
is below the detector's threshold), and its top-k classes are then only the closest ones.
The table marks such a row "unknown"; the CSV has `known` (true/false) and `ood_score`
columns (empty without a detector).

--shard I/N (I = 0 .. N-1) predicts only this machine's share: N machines given the same
PATHs and shards 0/N .. N-1/N cover every file exactly once. A file's shard depends on its
path below the folder given (a hash), not on the listing order, so the machines need not see
the files in the same order, and mounting the folder elsewhere does not move a file.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import logging
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from tqdm import tqdm

from image_classifier import atomic, config
from image_classifier.cli import setup_logging
from image_classifier.litert.classifier import Classifier, ModelLoadError
from image_classifier.preprocessing import ImageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]  # when not known: the closest classes, not an answer
    known: bool = True
    score: float | None = None  # out-of-distribution score; None without a detector


def expand_paths(paths: Iterable[Path], shard: tuple[int, int] = (0, 1)) -> Iterator[Path]:
    """Files as given; folders walked lazily, in sorted order, hidden entries skipped; only
    those in `shard` (index, count).

    Lazy so that a folder of millions of images never sits in memory as a list."""
    index, count = shard
    for path in paths:
        if not path.is_dir():
            if shard_of(path.as_posix(), count) == index:
                yield path
            continue
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                file = Path(folder) / name
                key = file.relative_to(path).as_posix()
                if not name.startswith(".") and shard_of(key, count) == index:
                    yield file


def shard_of(key: str, count: int) -> int:
    """Which of `count` shards a file belongs to: stable, and even in expectation."""
    if count == 1:
        return 0
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 0 <= I < N; ValueError with the rule otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N, e.g. 0/4, not {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"--shard {text}: need N >= 1 and 0 <= I < N")
    return index, count


def predict_paths(
    clf: Classifier, paths: Iterable[Path], top_k: int, batch_size: int, errors: list[str]
) -> Iterator[Prediction]:
    """Stream predictions; a file that cannot be read is appended to `errors` and skipped."""
    batch: list[np.ndarray] = []
    names: list[str] = []

    def flush() -> Iterator[Prediction]:
        out = clf.run(np.stack(batch))
        for name, p, known, score in zip(
            names, out.probabilities, out.known, out.scores, strict=True
        ):
            finite = float(score) if math.isfinite(score) else None
            yield Prediction(name, clf.top_k(p, top_k), bool(known), finite)
        batch.clear()
        names.clear()

    for path in paths:
        try:
            batch.append(clf.preprocess(path))
        except (ImageError, OSError) as exc:
            errors.append(f"{path}: {exc}")
            log.warning("skipped %s: %s", path, exc)
            continue
        names.append(path.as_posix())
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


def csv_header(top_k: int) -> list[str]:
    ranked = [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "prob")]
    return ["path", "known", "ood_score", *ranked]


def score_text(score: float | None) -> str:
    return "" if score is None else f"{score:.6g}"


def csv_row(pred: Prediction, top_k: int) -> list[str]:
    cells = [pred.path, "true" if pred.known else "false", score_text(pred.score)]
    for label, prob in pred.top:
        cells += [label, f"{prob:.6f}"]
    return cells + [""] * (3 + 2 * top_k - len(cells))


def table_line(pred: Prediction) -> str:
    """path, known or unknown, the score, then the classes (an unknown image's closest)."""
    ranked = [f"{label} ({prob:.3f})" for label, prob in pred.top]
    if not pred.known:
        ranked[0] = "closest: " + ranked[0]
    verdict = "known" if pred.known else "unknown"
    return "\t".join([pred.path, verdict, f"ood_score {score_text(pred.score) or '-'}", *ranked])


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    clf = Classifier.from_dir(Path(args.model_dir), num_threads=args.threads)
    roots = [Path(p) for p in args.paths]
    # Count first (a cheap walk) so the progress bar has a total without holding every path.
    total = sum(1 for _ in expand_paths(roots, args.shard)) if args.progress else None
    progress = tqdm(
        expand_paths(roots, args.shard),
        total=total,
        unit="img",
        file=sys.stderr,
        disable=not args.progress,
    )
    errors: list[str] = []
    count = unknown = 0
    with contextlib.ExitStack() as stack:
        writer = None
        if args.csv:
            tmp = stack.enter_context(atomic.atomic_path(args.csv))
            writer = csv.writer(stack.enter_context(tmp.open("w", encoding="utf-8", newline="")))
            writer.writerow(csv_header(args.top_k))
        for pred in predict_paths(clf, progress, args.top_k, args.batch_size, errors):
            count += 1
            unknown += not pred.known
            if writer:
                writer.writerow(csv_row(pred, args.top_k))
            if not args.quiet:
                print(table_line(pred), file=out)
    log.info(
        "predicted %d images (%d unknown: none of the classes); %d could not be read",
        count,
        unknown,
        len(errors),
    )
    return 1 if errors else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.predict", description=__doc__)
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--csv", type=Path, help="also write predictions to this CSV file")
    parser.add_argument("--model-dir", default=str(config.MODELS_DIR))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="LiteRT threads (default: all)")
    parser.add_argument("--quiet", action="store_true", help="no table on stdout")
    parser.add_argument(
        "--shard", default="0/1", metavar="I/N", help="predict share I of N (I = 0 .. N-1)"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        parser.error("--top-k and --batch-size must be >= 1")
    try:
        args.shard = parse_shard(args.shard)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = parse_args(argv)
    try:
        return run(args)
    except ModelLoadError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
