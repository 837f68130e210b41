"""Tiny inline-SVG charts for the HTML report (no matplotlib, no Qt)."""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16")


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: a step of 1, 2, 2.5 or 5 times a power of
    ten, about ``target`` intervals, first and last tick at or beyond the ends."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / max(1, target)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw - 1e-12)
    start = math.floor(lo / step + 1e-9) * step
    ticks, v = [], start
    while v < hi + step * 0.999:
        ticks.append(round(v, 10))
        if v >= hi - 1e-9:
            break
        v += step
    return ticks


def tick_label(v: float, ticks: list[float]) -> str:
    """A tick's text with as few decimals as its step needs ("0.25", "600")."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = 0
    while decimals < 6 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return _plain(v, decimals)


def _plain(v: float, decimals: int = 6) -> str:
    text = f"{v:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def interval_chart(rows, lo: float, hi: float, ref: float | None = None, width: int = 640,
                   label_width: int = 220, value_fmt="{:.2f}", axis_label: str = "") -> str:
    """One row per item: a dot at the value and a whisker over its interval.

    ``rows`` are (label, value, (ci_lo, ci_hi) or None); ``ref`` draws a dashed line,
    labelled with its value. The axis runs between round ticks that cover [lo, hi]."""
    ticks = nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    row_h, top, bottom = 26, 22 if ref is not None else 10, 44 if axis_label else 26
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
    for v in ticks:
        parts.append(f'<line x1="{_fmt(x(v))}" y1="{axis_y}" x2="{_fmt(x(v))}" y2="{axis_y + 4}" '
                     'stroke="#a0aec0"/>')
        parts.append(f'<text class="tick" x="{_fmt(x(v))}" y="{axis_y + 16}" text-anchor="middle" '
                     f'fill="#4a5568">{escape(tick_label(v, ticks))}</text>')
    if axis_label:
        parts.append(f'<text x="{label_width + plot_w / 2}" y="{axis_y + 34}" text-anchor="middle" '
                     f'fill="#4a5568">{escape(axis_label)}</text>')
    if ref is not None:
        parts.append(f'<line x1="{_fmt(x(ref))}" y1="{top - 4}" x2="{_fmt(x(ref))}" y2="{axis_y}" '
                     'stroke="#718096" stroke-dasharray="4 3"/>')
        parts.append(f'<text class="ref" x="{_fmt(x(ref))}" y="{top - 8}" text-anchor="middle" '
                     f'fill="#718096">{escape(_plain(ref))}</text>')
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
    ticks = nice_ticks(min(values), max(values), target=4)
    ymin, ymax = ticks[0], ticks[-1]
    n = max(len(s) for s in series.values())
    pw, ph = width - left - right, height - top - bottom

    def pt(i, v):
        return (left + (i / max(1, n - 1)) * pw, top + (1 - (v - ymin) / (ymax - ymin)) * ph)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#cbd5e0"/>']
    for v in ticks:
        _, y = pt(0, v)
        parts.append(f'<line x1="{left}" y1="{_fmt(y)}" x2="{left + pw}" y2="{_fmt(y)}" stroke="#edf2f7"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{_fmt(y + 4)}" text-anchor="end" '
                     f'fill="#4a5568">{escape(tick_label(v, ticks))}</text>')
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
