"""data.relabel: labels fixed without moving files, every mistake named with file and line."""

from __future__ import annotations

import pytest

from image_classifier import split
from image_classifier.data.relabel import DROP, apply_relabels, read_relabels
from image_classifier.data.scan import ImageFile
from image_classifier.errors import DataError
from image_classifier.params import parse_params

from conftest import pattern, png

FILES = [
    ImageFile("data/raw/a/1.png", "a", "h1"),
    ImageFile("data/raw/a/2.png", "a", "h2"),
    ImageFile("data/raw/b/3.png", "b", "h3"),
]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_row_overrides_the_folder_label_and_drop_leaves_the_image_out(tmp_path):
    csv = write(tmp_path / "r.csv", "path,label\ndata/raw/a/1.png,b\n\ndata/raw/b/3.png,drop\n")
    files, counts = apply_relabels(FILES, ["a", "b"], read_relabels(csv), csv)
    assert [(f.path, f.label) for f in files] == [
        ("data/raw/a/1.png", "b"),
        ("data/raw/a/2.png", "a"),
    ]
    assert counts == {"relabelled": 1, "dropped": 1}
    assert DROP == "drop"


def test_no_file_means_no_relabels(tmp_path):
    missing = tmp_path / "none.csv"
    assert apply_relabels(FILES, ["a", "b"], read_relabels(missing), missing)[1] == {
        "relabelled": 0,
        "dropped": 0,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path;label\n", r"r\.csv:1: expected the header 'path,label'"),
        ("path,label\ndata/raw/a/1.png\n", r"r\.csv:2: expected 'path,label'"),
        ("path,label\ndata/raw/a/1.png,b,extra\n", r"r\.csv:2: expected 'path,label'"),
        ("path,label\n,b\n", r"r\.csv:2: expected 'path,label'"),
        ("path,label\ndata/raw/a/1.png,b\ndata/raw/a/1.png,a\n", r"r\.csv:3: .* already .* line 2"),
        ('path,label\n"data/raw/a/1.png,b\n', r"r\.csv:2: expected 'path,label'"),
    ],
)
def test_a_malformed_csv_names_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_relabels(write(tmp_path / "r.csv", text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,label\ndata/raw/a/9.png,b\n", r"r\.csv:2: no usable image data/raw/a/9\.png"),
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
    write(tmp_path / "data/relabel.csv", "path,label\ndata/raw/a/00.png,zebra\n")
    with pytest.raises(DataError, match=r"data/relabel\.csv:2: unknown class 'zebra'"):
        split.run(parse_params({}))
