"""Report blocks to Markdown and to one self-contained HTML file (plots inlined as base64 PNG).

A block is (kind, content): h1-h3, p (text, **bold** allowed), pre, details (a folded
architecture), img (a PNG path), ul (a list of sentences), table ((rows, columns)).
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

from PIL import Image

from .captions import caption, is_photo

STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
         "figure{display:inline-block;max-width:49%;vertical-align:top;margin:0.3em 0.5%}"
         "figure img{max-width:100%}figcaption{font-size:12px;color:#444}"
         "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
         "li{margin:0.3em 0}")


def _cell(value) -> str:
    return "—" if value is None else (f"{value:,}" if isinstance(value, int) else str(value))


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_markdown(blocks, study_dir: Path) -> str:
    out = []
    for kind, content in blocks:
        if kind.startswith("h"):
            out.append("#" * int(kind[1]) + " " + content)
        elif kind in ("pre", "details"):
            out.append(f"```\n{content.rstrip()}\n```")
        elif kind == "img":
            out.append(f"![{Path(content).stem}]({Path(content).relative_to(study_dir).as_posix()})\n\n"
                       f"*{caption(content)}*")
        elif kind == "table":
            out.append(markdown_table(*content))
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in content))
        else:
            out.append(content)
    return "\n\n".join(out) + "\n"


def _html_table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r[c]))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


PAGE_WIDTH = 800  # px: a figure is shown at most half of a 1200 px page wide, so this stays sharp


def _embedded(path: Path) -> tuple[str, bytes]:
    """A figure's bytes for the page, at most PAGE_WIDTH wide: photographs as JPEG, charts as PNG with
    a 256-colour palette (sharp lines and text in a third of the bytes). The files on disk keep full size."""
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > PAGE_WIDTH:
            image = image.resize((PAGE_WIDTH, round(image.height * PAGE_WIDTH / image.width)), Image.LANCZOS)
        if is_photo(path):
            image.save(buffer, format="JPEG", quality=75, optimize=True)
            return "image/jpeg", buffer.getvalue()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return "image/png", buffer.getvalue()


def _figure(path: Path) -> str:
    kind, data = _embedded(path)
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:{kind};base64,{base64.b64encode(data).decode()}">'
            f"<figcaption>{html.escape(caption(path))}</figcaption></figure>")


def to_html(blocks, title: str) -> str:
    out = []
    for kind, content in blocks:
        if kind.startswith("h"):
            out.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(content)}</pre>")
        elif kind == "details":
            out.append(f"<details><summary>Architecture</summary><pre>{html.escape(content)}</pre></details>")
        elif kind == "img":
            out.append(_figure(Path(content)))
        elif kind == "table":
            out.append(_html_table(*content))
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_text(item)}</li>" for item in content) + "</ul>")
        else:
            out.append(f"<p>{_text(content)}</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(out)}</body></html>\n")
