"""Charts as inline SVG built in Python: no JavaScript, no network, no style attributes (CSP).

The same markup goes into the web page and, through WeasyPrint, into the PDF.
"""

from __future__ import annotations

from markupsafe import Markup, escape

FONT = "Times New Roman, Liberation Serif, Tinos, DejaVu Serif, serif"
BAR_FILL = "#0b4f8a"
MAX_LABEL = 70  # about what 520 px of 13 px serif holds


def _fmt(n: float) -> str:
    return f"{int(n):,}".replace(",", ".") if float(n).is_integer() else f"{n:.1f}".replace(".", ",")


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def bar_chart_svg(items: list[tuple[str, float]], *, title: str, width: int = 520,
                  bar_height: int = 16, gap: int = 8) -> Markup:
    """Return a horizontal bar chart of (label, value) pairs as an SVG element.

    Each label sits on its own line above its bar, starting at the left edge: long Vietnamese
    labels ("Người có công, bảo trợ xã hội…") are never cut by the edge of the page, and the
    chart scales down with its box (viewBox) on a phone or a PDF column.
    """
    value_width = 70
    label_line = 16
    top = 26
    plot_width = width - value_width
    rows = [(str(label), float(value)) for label, value in items]
    row_height = label_line + bar_height + gap
    height = top + max(1, len(rows)) * row_height + 4
    peak = max((v for _, v in rows), default=0.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'font-family="{FONT}" font-size="13">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    if not rows:
        parts.append(f'<text x="0" y="{top + 14}" font-style="italic">Không có số liệu</text>')
    for i, (label, value) in enumerate(rows):
        y = top + i * row_height
        bar = 0 if peak <= 0 else max(1, round(plot_width * value / peak)) if value > 0 else 0
        parts.append(f'<text x="0" y="{y + 12}">{escape(_short(label))}</text>')
        bar_y = y + label_line
        parts.append(
            f'<rect x="0" y="{bar_y}" width="{bar}" height="{bar_height}" fill="{BAR_FILL}"/>'
        )
        parts.append(f'<text x="{bar + 5}" y="{bar_y + bar_height * 0.8:.1f}">{_fmt(value)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text piece above is escaped
