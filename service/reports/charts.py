"""Charts as inline SVG built in Python: no JavaScript, no network, no style attributes (CSP).

The same markup goes into the web page and, through WeasyPrint, into the PDF.
"""

from __future__ import annotations

from markupsafe import Markup, escape

FONT = "Times New Roman, Liberation Serif, Tinos, DejaVu Serif, serif"
BAR_FILL = "#0b4f8a"
MAX_LABEL = 42


def _fmt(n: float) -> str:
    return f"{int(n):,}".replace(",", ".") if float(n).is_integer() else f"{n:.1f}".replace(".", ",")


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def bar_chart_svg(items: list[tuple[str, float]], *, title: str, width: int = 520,
                  bar_height: int = 20, gap: int = 6) -> Markup:
    """Return a horizontal bar chart of (label, value) pairs as an SVG element."""
    label_width = int(width * 0.42)
    value_width = 70
    top = 26
    plot_width = width - label_width - value_width - 10
    rows = [(str(label), float(value)) for label, value in items]
    height = top + max(1, len(rows)) * (bar_height + gap) + 4
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
        y = top + i * (bar_height + gap)
        bar = 0 if peak <= 0 else max(1, round(plot_width * value / peak)) if value > 0 else 0
        mid = y + bar_height * 0.7
        parts.append(
            f'<text x="{label_width - 6}" y="{mid:.1f}" text-anchor="end">{escape(_short(label))}</text>'
        )
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{bar}" height="{bar_height}" fill="{BAR_FILL}"/>'
        )
        parts.append(f'<text x="{label_width + bar + 5}" y="{mid:.1f}">{_fmt(value)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text piece above is escaped
