"""Report blocks to Markdown and to one self-contained HTML file (plots inlined, a stylesheet of its
own, no network).

A block is (kind, content): h1-h3, p (text, **bold** and `code` allowed), lead (the takeaway), note (a
notice above everything: the study is still running), pre, details (a folded architecture), img (a
PNG path), ul (a list of sentences), table ((rows, columns)), fold (a section's title: in HTML a folded
<details> until the matching endfold; in Markdown an h3).
"""
from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

from PIL import Image

from .captions import caption, is_photo

CONTENT_PX = 960  # the page's content width; plots.FIGURE_WIDTH inches at 96 px per inch fill it
STYLE = """
:root{--fg:#1f2328;--bg:#fff;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--good:#1a7f37;--bad:#cf222e;
--grey:#6e7781;--warn:#9a6700;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#3d444d;
--card:#151b23;--good:#2f9e44;--bad:#e5534b;--grey:#768390;--warn:#c69026;--link:#4493f8}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);
background:var(--bg);max-width:CONTENTpx;margin:0 auto;padding:1rem;overflow-wrap:anywhere}
h1{font-size:1.75rem;line-height:1.25;margin:.4em 0}
h2{font-size:1.35rem;border-bottom:1px solid var(--line);padding-bottom:.25em;margin-top:1.8em}
h3{font-size:1.1rem;margin-top:1.4em}
code{font:.9em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--card);padding:.1em .3em;border-radius:4px}
pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--card);padding:.7em;
border-radius:6px;overflow-x:auto;overflow-wrap:normal;white-space:pre}
.scroll{overflow-x:auto;margin:.6em 0;max-width:100%}
table{border-collapse:collapse;font-size:14px;overflow-wrap:normal}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:var(--card);white-space:nowrap}
figure{margin:1em 0;max-width:100%}
figure img{display:block;max-width:100%;height:auto;background:#fff;border-radius:4px}
figcaption{color:var(--muted);font-size:14px;margin-top:.3em}
details{border:1px solid var(--line);border-radius:6px;padding:.2em .9em;margin:.6em 0}
details[open]{padding-bottom:.6em}
summary{cursor:pointer;font-weight:600;padding:.35em 0}
details details{border-style:dashed}
li{margin:.35em 0}
.lead{font-size:1.08rem;background:var(--card);border-left:4px solid var(--link);padding:.7em 1em;border-radius:4px}
.note{background:var(--card);border-left:4px solid var(--warn);padding:.6em 1em;border-radius:4px}
.tag{display:inline-block;padding:0 .5em;border-radius:1em;font-size:.88em;font-weight:600;color:#fff;
white-space:nowrap;line-height:1.5}
.good{background:var(--good)}.bad{background:var(--bad)}.grey{background:var(--grey)}.warn{background:var(--warn)}
""".replace("CONTENT", str(CONTENT_PX)).replace("\n", "")

# Words a reader scans for, as coloured labels: a comparison's and a verdict's.
TAGS = [("better", "good"), ("fits well", "good"), ("worse", "bad"), ("overfit", "bad"), ("diverged", "bad"),
        ("did not learn", "bad"), ("underfit", "warn"), ("no clear difference", "grey"), ("cannot be tested", "warn")]
TAGGED = re.compile(r"(?<![\w-])(better|worse|no clear difference|fits well|overfits?|underfits?|did not learn|"
                    r"diverged|cannot be tested)(?![\w-])")


def _tag(match: re.Match) -> str:
    word = match.group(1)
    kind = next(kind for prefix, kind in TAGS if word.startswith(prefix))
    return f'<span class="tag {kind}">{word}</span>'


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
        elif kind == "fold":
            out.append(f"### {content}")
        elif kind == "endfold":
            continue
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


TAGGED_COLUMNS = ("in words", "verdict", "words")


def _html_table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)

    def cell(row: dict, column: str) -> str:
        text = html.escape(_cell(row[column]))
        return TAGGED.sub(_tag, text) if column in TAGGED_COLUMNS else text
    body = "".join("<tr>" + "".join(f"<td>{cell(r, c)}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _text(text: str, tags: bool = False) -> str:
    """Inline Markdown (**bold**, `code`); with `tags`, a comparison's words after a colon and a verdict
    after a name or a colon, as labels."""
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text)))
    if not tags:
        return text
    text = re.sub(r"(: )(better|worse|no clear difference)\b", lambda m: m.group(1) + _tag(TAGGED.match(m.group(2))), text)
    return re.sub(r"(?:(?<=\w )|(?<=: )|(?<=\())(overfits?|underfits?|fits well|did not learn|diverged)(?=[ ,;:.)(]|$)",
                  lambda m: _tag(TAGGED.match(m.group(1))), text)


PAGE_WIDTH = CONTENT_PX  # px: the widest a figure is shown; the files on disk keep their full size


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


def shown_width(path: Path) -> int:
    """A figure's width on the page in CSS px: its inches at 96 px per inch (so its 12 pt text shows at
    16 px), at most the content width."""
    with Image.open(path) as image:
        dpi = image.info.get("dpi", (96, 96))[0] or 96
        return min(CONTENT_PX, round(image.width / float(dpi) * 96))


def _figure(path: Path) -> str:
    kind, data = _embedded(path)
    return (f'<figure><img alt="{html.escape(path.stem)}" width="{shown_width(path)}" '
            f'src="data:{kind};base64,{base64.b64encode(data).decode()}">'
            f"<figcaption>{html.escape(caption(path))}</figcaption></figure>")


def _html_block(kind: str, content) -> str:
    if kind.startswith("h"):
        return f"<{kind}>{html.escape(content)}</{kind}>"
    if kind == "pre":
        return f"<pre>{html.escape(content)}</pre>"
    if kind == "details":
        return f"<details><summary>Architecture</summary><pre>{html.escape(content)}</pre></details>"
    if kind == "fold":
        return f"<details><summary>{_text(content, tags=True)}</summary>"
    if kind == "endfold":
        return "</details>"
    if kind == "img":
        return _figure(Path(content))
    if kind == "table":
        return _html_table(*content)
    if kind == "ul":
        return "<ul>" + "".join(f"<li>{_text(item, tags=True)}</li>" for item in content) + "</ul>"
    if kind in ("lead", "note"):
        return f'<p class="{kind}">{_text(content)}</p>'
    return f"<p>{_text(content)}</p>"


def to_html(blocks, title: str) -> str:
    body = "".join(_html_block(kind, content) for kind, content in blocks)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<meta name='color-scheme' content='light dark'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")
