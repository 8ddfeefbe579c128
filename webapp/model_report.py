"""What the model page shows: the evaluate and export stages' reports, read once per worker.

The files (reports/metrics.json, reports/export.json, reports/eval/class_report.csv,
confusion.png, misclassified.png, evaluated_model.json, the model card model_card.md) ship
with the model in the deploy bundle and the Docker image. They are shown only for the model
they describe: the evaluate stage records the version it scored, and a mismatch says so
instead of showing another model's numbers (or its model card). The card's Markdown becomes
HTML here too (render_markdown), escaped first, without a Markdown package.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from image_classifier import config
from image_classifier.evaluation import HEADLINE_METRICS

log = logging.getLogger(__name__)

# Relative to the reports folder; the deploy bundle and the Dockerfile copy exactly these.
FILES = (
    "metrics.json",
    "export.json",
    "eval/class_report.csv",
    "eval/confusion.png",
    "eval/misclassified.png",
    f"eval/{config.EVALUATED_MODEL_FILE}",
    "audit/summary.json",  # counts only: the app ships no training image
    config.MODEL_CARD_MD.name,  # the evaluate stage's model card, Hugging Face style
)
FIGURES = {"confusion": "eval/confusion.png", "misclassified": "eval/misclassified.png"}


@dataclass(frozen=True)
class ModelReport:
    """Test-split evaluation of one model version; `problem` says why parts are missing."""

    model_version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    classes: list[dict[str, str]] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    problem: str = ""
    warning: str = ""  # evaluate's: the model does not beat the linear baseline
    audit: dict[str, Any] = field(default_factory=dict)  # the audit stage's counts, if shipped
    card: Markup | None = None  # reports/model_card.md as safe HTML, if shipped

    def headline(self) -> list[dict[str, Any]]:
        """Rows of (metric, model, linear baseline, majority baseline) for the page's table."""
        rows = []
        for name in HEADLINE_METRICS:
            if name not in self.metrics:
                continue
            rows.append(
                {
                    "metric": name,
                    "model": self.metrics[name],
                    "linear": self.metrics.get(f"baseline_linear_{name}"),
                    "majority": self.metrics.get(f"baseline_majority_{name}"),
                }
            )
        return rows


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_report(reports_dir: Path, served_version: str | None) -> ModelReport:
    """The reports for the served model, or an empty one whose `problem` explains why."""
    try:
        evaluated = _read_json(reports_dir / "eval" / config.EVALUATED_MODEL_FILE)
        metrics = _read_json(reports_dir / "metrics.json")
        with (reports_dir / "eval" / "class_report.csv").open(encoding="utf-8") as fh:
            classes = list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        log.warning("model page: no evaluation reports in %s (%s)", reports_dir, exc)
        return ModelReport(problem=f"no evaluation reports were deployed with this model ({exc})")
    version = str(evaluated.get("model_version", ""))
    if served_version is not None and version != served_version:
        return ModelReport(
            model_version=version,
            problem=f"the deployed reports describe model {version}, not the served model "
            f"{served_version}: re-run `dvc repro` and deploy again",
        )
    export_path = reports_dir / "export.json"
    export = _read_json(export_path) if export_path.is_file() else {}
    figures = {}
    for name, rel in FIGURES.items():
        path = reports_dir / rel
        if path.is_file():
            figures[name] = path.read_bytes()
    warning = str(evaluated.get("warning") or "")
    audit_path = reports_dir / "audit" / "summary.json"
    audit = _read_json(audit_path) if audit_path.is_file() else {}
    card = load_card_html(reports_dir / config.MODEL_CARD_MD.name, figures, version)
    return ModelReport(
        version, metrics, export, classes, figures, warning=warning, audit=audit, card=card
    )


def load_card_html(path: Path, figures: dict[str, bytes], version: str) -> Markup | None:
    """The model card as HTML, when it names the model `version` (the evaluate stage's card
    does, in its title and versions); the report figures it names link to the page's own
    copies (relative URLs: /model/<name>.png from the /model page)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("model page: cannot read %s (%s)", path, exc)
        return None
    if version not in text:
        log.warning("model page: %s does not name model %s; not shown", path, version)
        return None
    links = {}
    for name, rel in FIGURES.items():
        if name in figures:
            for src in (rel, f"{config.REPORTS_DIR.name}/{rel}"):
                links[src] = f"model/{name}.png"
    return render_markdown(text, links)


# The model card (reports/model_card.md) as HTML for the /model page, with no dependency.
#
# A Markdown subset, the one a Hugging Face model card uses: YAML front matter (left out: it
# is metadata for the Hub, not for a reader), headings, paragraphs, bullet and numbered lists
# (nested by indentation), pipe tables, block quotes, fenced code, rules, and inline code,
# bold, italics and links. Safe by construction: every character of the source is
# HTML-escaped before any markup is added, raw HTML shows as text, links keep only http(s)
# addresses, and an image shows only when it is one of the report figures the page serves.
# Headings get no `id`, so the card cannot clash with the page's own elements.

FRONT_MATTER = re.compile(r"\A---\n.*?\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
FENCE = re.compile(r"^\s{0,3}(```+|~~~+)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
RULE = re.compile(r"^\s{0,3}(?:(?:\*\s*){3,}|(?:-\s*){3,}|(?:_\s*){3,})$")
ITEM = re.compile(r"^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$")
QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")

# Inline, on escaped text: markupsafe escapes & < > " ' (quotes as &#34; and &#39;).
CODE = re.compile(r"(`+)(.+?)\1")
IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*([^)\s]*)[^)]*\)")
LINK = re.compile(r"\[([^\]]+)\]\(\s*([^)\s]*)[^)]*\)")
STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
EM = re.compile(r"(?<![*\w])\*(?=\S)(.+?)(?<=\S)\*(?!\*)|(?<![_\w])_(?=\S)(.+?)(?<=\S)_(?!\w)")
SLOT = "\x00{}\x00"


def _inline(text: str, figures: Mapping[str, str]) -> str:
    """One line or cell of Markdown as HTML: escaped first, then the inline markup."""
    slots: list[str] = []

    def keep(html: str) -> str:
        slots.append(html)
        return SLOT.format(len(slots) - 1)

    def image(m: re.Match) -> str:
        alt, src = m.group(1), m.group(2)
        if src in figures:
            return keep(f'<img src="{figures[src]}" alt="{alt}">')
        return alt

    def link(m: re.Match) -> str:
        label, href = m.group(1), m.group(2)
        if urlsplit(href.replace("&amp;", "&")).scheme.lower() in ("http", "https"):
            return keep(f'<a href="{href}" rel="nofollow noopener noreferrer">') + label + "</a>"
        return label

    html = str(escape(text.replace("\x00", "")))
    html = CODE.sub(lambda m: keep(f"<code>{m.group(2).strip()}</code>"), html)
    html = IMAGE.sub(image, html)
    html = LINK.sub(link, html)
    html = STRONG.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", html)
    html = EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", html)
    # Slots may hold slots (a link's label holds code); restore until none is left.
    while "\x00" in html:
        html = re.sub(r"\x00(\d+)\x00", lambda m: slots[int(m.group(1))], html)
    return html


def _cells(line: str) -> list[str]:
    line = line.strip()
    line = line[1:] if line.startswith("|") else line
    line = line[:-1] if line.endswith("|") and not line.endswith("\\|") else line
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)]


def _align(rule: str) -> str:
    left, right = rule.startswith(":"), rule.endswith(":")
    if left and right:
        return ' class="center"'
    return ' class="right"' if right else ""


def _table(rows: list[str], inline: Callable[[str], str]) -> str:
    head, aligns = _cells(rows[0]), [_align(c) for c in _cells(rows[1])]
    width = len(head)
    aligns = (aligns + [""] * width)[:width]

    def row(cells: list[str], tag: str) -> str:
        cells = (cells + [""] * width)[:width]
        return "<tr>" + "".join(
            f"<{tag}{a}>{inline(c)}</{tag}>" for c, a in zip(cells, aligns, strict=True)
        )

    body = "".join(row(_cells(r), "td") + "</tr>" for r in rows[2:])
    return f"<table><thead>{row(head, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def render_markdown(text: str, figures: Mapping[str, str] | None = None) -> Markup:
    """Markdown -> safe HTML. `figures` maps an image source the card may name (such as
    eval/confusion.png) to the URL the page serves it at."""
    figures = figures or {}

    def inline(s: str) -> str:
        return _inline(s, figures)

    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = COMMENT.sub("", FRONT_MATTER.sub("", text, count=1))
    lines = text.split("\n")
    out: list[str] = []
    para: list[str] = []
    lists: list[tuple[int, str]] = []  # open lists: (indent, "ul" or "ol")

    def close_para() -> None:
        if para:
            out.append("<p>" + " ".join(inline(s.strip()) for s in para) + "</p>")
            para.clear()

    def close_lists(indent: int = -1) -> None:
        while lists and lists[-1][0] > indent:
            out.append(f"</li></{lists.pop()[1]}>")

    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            close_para()
            # A blank line ends a list unless the next line continues it (indented or an item).
            nxt = next((s for s in lines[i + 1 :] if s.strip()), "")
            if lists and not (ITEM.match(nxt) or nxt.startswith("  ")):
                close_lists()
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            close_para()
            close_lists()
            marker, code = fence.group(1), []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                code.append(lines[i])
                i += 1
            out.append(f"<pre><code>{escape(chr(10).join(code))}</code></pre>")
            i += 1
            continue
        heading = HEADING.match(line)
        if heading:
            close_para()
            close_lists()
            # The page's own title is the h1: the card's headings go one level down.
            level = min(len(heading.group(1)) + 1, 6)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        if RULE.match(line):
            close_para()
            close_lists()
            out.append("<hr>")
            i += 1
            continue
        if "|" in line and i + 1 < len(lines) and TABLE_RULE.match(lines[i + 1]):
            close_para()
            close_lists()
            rows = [line, lines[i + 1]]
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                rows.append(lines[i])
                i += 1
            out.append(_table(rows, inline))
            continue
        item = ITEM.match(line)
        if item:
            close_para()
            indent, tag = len(item.group(1)), "ol" if item.group(2)[0].isdigit() else "ul"
            close_lists(indent)
            if lists and lists[-1][0] == indent and lists[-1][1] != tag:
                out.append(f"</li></{lists.pop()[1]}>")
            if lists and lists[-1][0] == indent:
                out.append("</li>")
            else:  # a new list: at the top, or nested in the open item
                out.append(f"<{tag}>")
                lists.append((indent, tag))
            out.append("<li>" + inline(item.group(3)))
            i += 1
            continue
        if lists:  # a continuation line of the open item
            out.append(" " + inline(line.strip()))
            i += 1
            continue
        quote = QUOTE.match(line)
        if quote:
            close_para()
            quoted = []
            while i < len(lines) and (q := QUOTE.match(lines[i])):
                quoted.append(inline(q.group(1).strip()))
                i += 1
            out.append("<blockquote><p>" + " ".join(quoted) + "</p></blockquote>")
            continue
        para.append(line)
        i += 1
    close_para()
    close_lists()
    return Markup("\n".join(out))
