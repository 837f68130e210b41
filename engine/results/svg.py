"""Tiny inline-SVG charts for the HTML report (no matplotlib, no Qt)."""

from __future__ import annotations

from html import escape

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16")


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def interval_chart(rows, lo: float, hi: float, ref: float | None = None, width: int = 640,
                   label_width: int = 220, value_fmt="{:.2f}") -> str:
    """One row per item: a dot at the value and a whisker over its interval.

    ``rows`` are (label, value, (ci_lo, ci_hi) or None); ``ref`` draws a dashed line."""
    row_h, top, bottom = 26, 10, 26
    height = top + bottom + row_h * max(1, len(rows))
    plot_w = width - label_width - 60
    span = (hi - lo) or 1.0

    def x(v):
        return label_width + (min(max(v, lo), hi) - lo) / span * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">']
    axis_y = top + row_h * len(rows) + 4
    parts.append(f'<line x1="{label_width}" y1="{axis_y}" x2="{label_width + plot_w}" y2="{axis_y}" '
                 'stroke="#a0aec0"/>')
    for i in range(5):
        v = lo + span * i / 4
        parts.append(f'<text x="{_fmt(x(v))}" y="{axis_y + 16}" text-anchor="middle" fill="#4a5568">'
                     f'{escape(value_fmt.format(v))}</text>')
    if ref is not None:
        parts.append(f'<line x1="{_fmt(x(ref))}" y1="{top - 4}" x2="{_fmt(x(ref))}" y2="{axis_y}" '
                     'stroke="#718096" stroke-dasharray="4 3"/>')
    for i, (label, value, ci) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        parts.append(f'<text x="{label_width - 8}" y="{cy + 4}" text-anchor="end" fill="#1a202c">'
                     f'{escape(str(label))}</text>')
        if value is None:
            continue
        color = PALETTE[i % len(PALETTE)]
        if ci:
            parts.append(f'<line x1="{_fmt(x(ci[0]))}" y1="{cy}" x2="{_fmt(x(ci[1]))}" y2="{cy}" '
                         f'stroke="{color}" stroke-width="2"/>')
            for end in ci:
                parts.append(f'<line x1="{_fmt(x(end))}" y1="{cy - 5}" x2="{_fmt(x(end))}" '
                             f'y2="{cy + 5}" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<circle cx="{_fmt(x(value))}" cy="{cy}" r="4.5" fill="{color}"/>')
        parts.append(f'<text x="{label_width + plot_w + 8}" y="{cy + 4}" fill="#4a5568">'
                     f'{escape(value_fmt.format(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(series: dict[str, list[float]], width: int = 640, height: int = 240,
               y_label: str = "") -> str:
    """Lines over a shared x axis (vote number), with a legend."""
    left, right, top, bottom = 56, 150, 12, 28
    values = [v for s in series.values() for v in s]
    if not values:
        return ""
    ymin, ymax = min(values), max(values)
    if ymax - ymin < 1e-9:
        ymin, ymax = ymin - 1, ymax + 1
    n = max(len(s) for s in series.values())
    pw, ph = width - left - right, height - top - bottom

    def pt(i, v):
        return (left + (i / max(1, n - 1)) * pw, top + (1 - (v - ymin) / (ymax - ymin)) * ph)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#cbd5e0"/>']
    for frac in (0, 0.5, 1):
        v = ymin + (ymax - ymin) * frac
        _, y = pt(0, v)
        parts.append(f'<text x="{left - 6}" y="{_fmt(y + 4)}" text-anchor="end" fill="#4a5568">'
                     f'{v:.0f}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" fill="#4a5568">'
                 f'vote number</text>')
    if y_label:
        parts.append(f'<text x="12" y="{top + ph / 2}" fill="#4a5568" transform="rotate(-90 12 '
                     f'{top + ph / 2})" text-anchor="middle">{escape(y_label)}</text>')
    for k, (name, s) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = " ".join(f"{_fmt(a)},{_fmt(b)}" for a, b in (pt(i, v) for i, v in enumerate(s)))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        ly = top + 14 + 18 * k
        parts.append(f'<rect x="{left + pw + 10}" y="{ly - 9}" width="12" height="3" fill="{color}"/>')
        parts.append(f'<text x="{left + pw + 28}" y="{ly - 4}" fill="#1a202c">{escape(name[:18])}</text>')
    parts.append("</svg>")
    return "".join(parts)
