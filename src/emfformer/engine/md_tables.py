"""The little markdown emfformer writes (``bench.md``, ``summary.md``) as HTML, for the report.

Handled: ``#`` headings (shifted down so they nest under the report's own), ``- `` bullet lists, pipe
tables (``| a | b |`` + ``|---|---:|`` alignment row) and paragraphs, with inline ``**bold**`` and
```code```. Everything is HTML-escaped first; tables come wrapped in a ``div.table-wrap`` that
scrolls by itself, so a wide table never widens the page.
"""

from __future__ import annotations

import html
import re

__all__ = ["markdown_to_html", "parse_pipe_table"]

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    """Escaped ``text`` with **bold** and `code` spans."""
    out = html.escape(text, quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    return _BOLD.sub(r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    """The cells of one ``| a | b |`` row (an escaped ``\\|`` stays inside its cell)."""
    body = line.strip().removeprefix("|").removesuffix("|")
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)]


def _is_rule(line: str) -> bool:
    """The ``|---|:--:|---:|`` row under a table's header."""
    cells = _cells(line)
    return bool(cells) and all(re.fullmatch(r":?-{1,}:?", c) for c in cells)


def parse_pipe_table(lines: list[str]) -> tuple[list[str], list[str], list[list[str]]]:
    """(header cells, alignments 'left'|'right'|'center', body rows) of a markdown pipe table.

    Raises:
        ValueError: fewer than two lines, or the second is no ``|---|`` rule.
    """
    if len(lines) < 2 or not _is_rule(lines[1]):
        raise ValueError("a pipe table needs a header row and a |---| rule under it")
    head = _cells(lines[0])
    align = []
    for c in _cells(lines[1]):
        align.append(
            "center" if c.startswith(":") and c.endswith(":") else "right" if c.endswith(":") else "left"
        )
    rows = [_cells(line) for line in lines[2:]]
    return head, align, rows


def _table(lines: list[str]) -> str:
    head, align, rows = parse_pipe_table(lines)
    width = len(head)

    def row(cells: list[str], tag: str) -> str:
        cells = (cells + [""] * width)[:width]  # ragged rows: padded or cut to the header
        return (
            "<tr>"
            + "".join(
                f'<{tag} style="text-align:{a}">{_inline(c)}</{tag}>'
                for c, a in zip(cells, align, strict=False)
            )
            + "</tr>"
        )

    body = "".join(row(r, "td") for r in rows)
    return (
        f'<div class="table-wrap"><table><thead>{row(head, "th")}</thead><tbody>{body}</tbody></table></div>'
    )


def markdown_to_html(text: str, heading_shift: int = 2) -> str:
    """HTML of ``text``; ``# x`` becomes ``<h{1 + heading_shift}>`` (at most h6)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level = min(6, len(m.group(1)) + heading_shift)
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif re.match(r"\s*[-*]\s+", line):
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                items.append(f"<li>{_inline(item)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"\s*([-*]\s|#|\|)", lines[i]):
                para.append(lines[i].strip())
                i += 1
            if not para:  # a stray "|" line that starts no table: shown as text
                para, i = [line.strip()], i + 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)
