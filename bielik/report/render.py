"""One renderer for the report's tables and sections: Markdown, self-contained HTML, and rich (terminal).

The HTML page needs nothing from outside: the style sheet is inline, images are base64 data URIs and
no fonts or scripts are loaded, so it renders offline and can be mailed as one file. The Markdown version
links its images from a ``<name>_files/`` folder written next to it.
"""

from __future__ import annotations

import base64
import html

from bielik.report.document import Figure, Report, Section, Table

# ------------------------------------------------------------------------------------------ Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def table_markdown(t: Table) -> str:
    """A GitHub-flavoured pipe table with its title in bold above and its note below."""
    align = ["---:" if t.numeric(c) else "---" for c in range(len(t.header))]
    lines = [
        f"**{t.title}**",
        "",
        "| " + " | ".join(_md_cell(h) for h in t.header) + " |",
        "|" + "|".join(align) + "|",
    ]
    for r in range(len(t.rows)):
        lines.append("| " + " | ".join(_md_cell(t.cell(r, c)) for c in range(len(t.header))) + " |")
    if t.note:
        lines += ["", t.note]
    return "\n".join(lines) + "\n"


def section_markdown(s: Section, files_dir: str, level: int = 2) -> str:
    out = [f"{'#' * level} {s.title}" + (f" (`{s.kind}`)" if s.kind else ""), ""]
    if s.facts:
        out += [" · ".join(f"**{k}** {v}" for k, v in s.facts), ""]
    for n in s.notes:
        out += [f"> {n}", ""]
    for t in s.tables:
        out += [table_markdown(t)]
    for f in s.figures:
        out += [f"![{f.caption}]({files_dir}/{f.name})", "", f"*{f.caption}*", ""]
    if s.lineage is not None:
        out += [table_markdown(s.lineage)]
    if s.config_yaml:
        out += [
            "<details><summary>config.yaml</summary>",
            "",
            "```yaml",
            s.config_yaml.rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    return "\n".join(out)


def report_markdown(rep: Report, files_dir: str) -> str:
    parts = [
        f"# {rep.title}",
        "",
        rep.subtitle,
        "",
        section_markdown(rep.summary, files_dir),
    ]
    parts += [section_markdown(s, files_dir) for s in rep.sections]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------ HTML

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;color:#1d2330;
 background:#f6f7f9;
 font-size:14px;line-height:1.45}
header{background:#1d3557;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px 0;font-size:24px} header p{margin:0;opacity:.85}
nav{display:flex;flex-wrap:wrap;gap:2px 0;padding:10px 32px;background:#e8ecf2;border-bottom:1px solid #d0d6df;
 font-size:13px}
nav a{margin-right:12px;color:#1d3557;text-decoration:none;white-space:nowrap} nav a:hover{text-decoration:underline}
main{padding:8px 32px 40px 32px;max-width:1400px}
section{background:#fff;border:1px solid #d8dde5;border-radius:6px;padding:14px 20px;margin:16px 0}
h2{margin:4px 0 8px 0;font-size:19px}
h2 code{font-size:13px;color:#55607a;background:#eef1f5;padding:2px 6px;border-radius:4px}
.facts{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12.5px;color:#3c4658;margin-bottom:8px}
.facts b{color:#1d2330}
.st-done{color:#1a7f37;font-weight:600} .st-incomplete,.st-failed{color:#b42318;font-weight:600}
table{border-collapse:collapse;margin:6px 0 4px 0;font-size:13px}
caption{text-align:left;font-weight:600;padding:4px 0;color:#1d3557}
th,td{border:1px solid #d8dde5;padding:3px 8px;vertical-align:top}
th{background:#eef1f5;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:nth-child(even) td{background:#fafbfc}
.note{font-size:12.5px;color:#55607a;margin:0 0 12px 0;white-space:pre-wrap}
.tables{display:flex;flex-wrap:wrap;gap:0 28px;align-items:flex-start} .tables>div{max-width:100%;overflow-x:auto}
.figures{display:flex;flex-wrap:wrap;gap:0 20px;align-items:flex-start}
figure{margin:10px 0} figure img{max-width:100%;border:1px solid #e3e7ed}
figcaption{font-size:12.5px;color:#55607a;max-width:900px}
details{margin:6px 0} summary{cursor:pointer;color:#1d3557;font-size:13px}
pre{background:#f3f5f8;border:1px solid #e0e4ea;padding:8px;overflow-x:auto;font-size:12px;max-height:480px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(t: Table) -> str:
    num = [t.numeric(c) for c in range(len(t.header))]
    head = "".join(f"<th>{_e(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_e(t.cell(r, c))}</td>' if num[c] else f"<td>{_e(t.cell(r, c))}</td>"
            for c in range(len(t.header))
        )
        + "</tr>"
        for r in range(len(t.rows))
    )
    note = f'<p class="note">{_e(t.note)}</p>' if t.note else ""
    table = f"<table><caption>{_e(t.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div>{table}{note}</div>"


def figure_html(f: Figure) -> str:
    data = base64.b64encode(f.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(f.caption)}" data-name="{_e(f.name)}">'
        f"<figcaption>{_e(f.caption)}</figcaption></figure>"
    )


def section_html(s: Section) -> str:
    out = [f'<section id="{_e(s.id)}"><h2>{_e(s.title)}' + (f" <code>{_e(s.kind)}</code>" if s.kind else "") + "</h2>"]
    if s.facts:
        out.append(
            '<div class="facts">'
            + "".join(
                f"<span><b>{_e(k)}</b> "
                + (f'<span class="st-{_e(v)}">{_e(v)}</span>' if k == "status" else _e(v))
                + "</span>"
                for k, v in s.facts
            )
            + "</div>"
        )
    out += [f'<p class="note">{_e(n)}</p>' for n in s.notes]
    if s.tables:
        out.append('<div class="tables">' + "".join(table_html(t) for t in s.tables) + "</div>")
    if s.figures:
        out.append('<div class="figures">' + "".join(figure_html(f) for f in s.figures) + "</div>")
    if s.lineage is not None:
        out.append('<div class="tables">' + table_html(s.lineage) + "</div>")
    if s.config_yaml:
        out.append(f'<details class="config"><summary>config.yaml</summary><pre>{_e(s.config_yaml)}</pre></details>')
    if s.metrics_json:
        out.append(f'<details class="metrics"><summary>metrics.json</summary><pre>{_e(s.metrics_json)}</pre></details>')
    out.append("</section>")
    return "\n".join(out)


def report_html(rep: Report) -> str:
    nav = "".join(f'<a href="#{_e(s.id)}">{_e(s.title)}</a>' for s in [rep.summary, *rep.sections])
    body = "\n".join(section_html(s) for s in [rep.summary, *rep.sections])
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(rep.title)}</title>'
        f"<style>{CSS}</style></head><body><header><h1>{_e(rep.title)}</h1><p>{_e(rep.subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>\n{body}\n</main></body></html>\n"
    )


# ------------------------------------------------------------------------------------------ terminal


def to_rich(t: Table):
    """The same table for the terminal (``rich.table.Table``), e.g. ``console.print(to_rich(t))``.

    Text is escaped: a title such as ``E[cos(x_in, x_out)]`` is not rich markup."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    rt = RichTable(title=escape(t.title), caption=escape(t.note) if t.note else None)
    for c, h in enumerate(t.header):
        rt.add_column(escape(h), justify="right" if t.numeric(c) else "left")
    for r in range(len(t.rows)):
        rt.add_row(*(escape(t.cell(r, c)) for c in range(len(t.header))))
    return rt
