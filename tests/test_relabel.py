"""data.relabel: labels fixed without moving files, every mistake named with file and line."""

from __future__ import annotations

import hashlib

import pytest

from image_classifier import split
from image_classifier.data.relabel import DROP, apply_relabels, format_relabels, read_relabels
from image_classifier.data.scan import ImageFile
from image_classifier.errors import DataError
from image_classifier.params import parse_params

from conftest import pattern, png

FILES = [
    ImageFile("data/raw/a/1.png", "a", "h1"),
    ImageFile("data/raw/a/2.png", "a", "h2"),
    ImageFile("data/raw/b/3.png", "b", "h3"),
]
SHA = {f.sha256: hashlib.sha256(f.sha256.encode()).hexdigest() for f in FILES}
# The same images after packing the first into a shard, with real content hashes.
HASHED = [
    ImageFile("data/raw/part-00000.zip!/a/1.png", "a", SHA["h1"]),
    ImageFile("data/raw/a/2.png", "a", SHA["h2"]),
    ImageFile("data/raw/b/3.png", "b", SHA["h3"]),
]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_row_overrides_the_folder_label_and_drop_leaves_the_image_out(tmp_path):
    csv = write(tmp_path / "r.csv", "path,label\ndata/raw/a/1.png,b\n\ndata/raw/b/3.png,drop\n")
    applied = apply_relabels(FILES, ["a", "b"], read_relabels(csv), csv)
    assert [(f.path, f.label) for f in applied.files] == [
        ("data/raw/a/1.png", "b"),
        ("data/raw/a/2.png", "a"),
    ]
    assert (applied.relabelled, applied.dropped, applied.missing) == (1, 1, [])
    assert DROP == "drop"


def test_a_row_with_a_content_hash_follows_its_image_through_a_rename(tmp_path):
    csv = write(
        tmp_path / "r.csv",
        f"path,label,sha256\ndata/raw/a/old-name.png,b,{SHA['h1']}\ndata/raw/b/3.png,a,\n",
    )
    applied = apply_relabels(HASHED, ["a", "b"], read_relabels(csv), csv)
    assert [(f.path, f.label) for f in applied.files] == [
        ("data/raw/part-00000.zip!/a/1.png", "b"),
        ("data/raw/a/2.png", "a"),
        ("data/raw/b/3.png", "a"),
    ]
    assert (applied.relabelled, applied.moved, applied.missing) == (2, 1, [])


def test_a_row_whose_image_is_gone_is_reported_not_fatal(tmp_path):
    csv = write(
        tmp_path / "r.csv",
        f"path,label,sha256\ndata/raw/a/gone.png,b,{'0' * 64}\ndata/raw/a/1.png,drop\n",
    )
    applied = apply_relabels(FILES, ["a", "b"], read_relabels(csv), csv)
    assert [r.path for r in applied.missing] == ["data/raw/a/gone.png"]
    assert applied.missing[0].line == 2 and applied.dropped == 1


def test_two_rows_giving_one_image_two_labels_are_refused(tmp_path):
    csv = write(
        tmp_path / "r.csv",
        f"path,label,sha256\ndata/raw/old.png,b,{SHA['h1']}\ndata/raw/part-00000.zip!/a/1.png,drop,\n",
    )
    with pytest.raises(DataError, match=r"r\.csv: line 3 relabels .* 'drop' but line 2 .* 'b'"):
        apply_relabels(HASHED, ["a", "b"], read_relabels(csv), csv)


def test_format_relabels_writes_what_read_relabels_reads(tmp_path):
    rows = [("data/raw/a/1.png", "b", SHA["h1"]), ("data/raw/b/3.png", "drop", None)]
    csv = write(tmp_path / "r.csv", format_relabels(rows))
    parsed = read_relabels(csv).rows
    assert [(r.path, r.label, r.sha256, r.line) for r in parsed] == [
        (*rows[0], 2),
        (*rows[1], 3),
    ]


def test_no_file_means_no_relabels(tmp_path):
    missing = tmp_path / "none.csv"
    applied = apply_relabels(FILES, ["a", "b"], read_relabels(missing), missing)
    assert (applied.files, applied.relabelled, applied.dropped) == (FILES, 0, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path;label\n", r"r\.csv:1: expected the header 'path,label\[,sha256\]'"),
        ("path,label\ndata/raw/a/1.png\n", r"r\.csv:2: expected 'path,label'"),
        ("path,label\ndata/raw/a/1.png,b,extra\n", r"r\.csv:2: expected 'path,label'"),
        ("path,label\n,b\n", r"r\.csv:2: expected 'path,label'"),
        ("path,label\ndata/raw/a/1.png,b\ndata/raw/a/1.png,a\n", r"r\.csv:3: .* already .* line 2"),
        ('path,label\n"data/raw/a/1.png,b\n', r"r\.csv:2: expected 'path,label'"),
        ("path,label,sha256\na.png,b,c,d\n", r"r\.csv:2: expected 'path,label,sha256'"),
        ("path,label,sha256\na.png,b,XYZ\n", r"r\.csv:2: sha256 must be 64 lowercase hex"),
        (
            f"path,label,sha256\na.png,b,{'a' * 64}\nb.png,b,{'a' * 64}\n",
            r"r\.csv:3: content a+ is already relabelled on line 2",
        ),
    ],
)
def test_a_malformed_csv_names_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_relabels(write(tmp_path / "r.csv", text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,label\ndata/raw/a/1.png,c\n", r"r\.csv:2: unknown class 'c'"),
        ("path,label\ndata/raw/b/3.png,a\n", r"r\.csv:2: the relabels leave no image in class 'b'"),
        (
            "path,label\ndata/raw/a/2.png,drop\ndata/raw/a/1.png,b\n",
            r"r\.csv:2,3: the relabels leave no image in class 'a'",
        ),
    ],
)
def test_bad_rows_are_refused_before_anything_changes(tmp_path, text, message):
    csv = write(tmp_path / "r.csv", text)
    with pytest.raises(DataError, match=message):
        apply_relabels(FILES, ["a", "b"], read_relabels(csv), csv)


def test_split_honours_the_file_and_counts_what_it_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for label, name in enumerate(["a", "b"]):
        (tmp_path / "data/raw" / name).mkdir(parents=True)
        for i in range(20):
            (tmp_path / "data/raw" / name / f"{i:02d}.png").write_bytes(png(pattern(label, i)))
    write(
        tmp_path / "data/relabel.csv",
        "path,label\ndata/raw/a/00.png,b\ndata/raw/a/01.png,drop\ndata/raw/b/05.png,drop\n",
    )
    report = split.run(parse_params({}))
    assert (report["relabelled"], report["dropped"]) == (1, 2)
    assert sum(report["totals"].values()) == 38
    counts = {k: sum(v.get(k, 0) for v in report["counts"].values()) for k in ("a", "b")}
    assert counts == {"a": 18, "b": 20}
    stale = "path,label\ndata/raw/a/00.png,b\ndata/raw/a/gone.png,drop\n"
    write(tmp_path / "data/relabel.csv", stale)
    report = split.run(parse_params({}))
    assert report["relabel_missing"] == [
        {"line": 3, "path": "data/raw/a/gone.png", "label": "drop", "sha256": None}
    ]
    assert (tmp_path / "data/relabel.csv").read_text(encoding="utf-8") == stale
    write(tmp_path / "data/relabel.csv", "path,label\ndata/raw/a/00.png,zebra\n")
    with pytest.raises(DataError, match=r"data/relabel\.csv:2: unknown class 'zebra'"):
        split.run(parse_params({}))
