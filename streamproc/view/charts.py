"""Small inline SVG charts for the HTML report (no plotting library, crisp at any zoom)."""

from __future__ import annotations

from html import escape

import numpy as np

WIDTH, HEIGHT, PAD = 560, 260, 58


def _frame(title: str, body: str, x_label: str, y_label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">'
            f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>'
            f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - 12}" y2="{HEIGHT - PAD}" stroke="#888"/>'
            f'<line x1="{PAD}" y1="28" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
            f'<text x="{WIDTH / 2}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>'
            f'<text x="12" y="{HEIGHT / 2}" text-anchor="middle" transform="rotate(-90 12 {HEIGHT / 2})">'
            f'{escape(y_label)}</text>{body}</svg>')


def _scale(values, lo_px, hi_px):
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return lambda v: lo_px + (v - lo) / span * (hi_px - lo_px), lo, hi


def bars(title: str, labels: list[str], values: list[float], colors: list[str], *, x_label="", y_label="") -> str:
    n = max(len(values), 1)
    top = max(values) if values else 1
    step = (WIDTH - PAD - 16) / n
    body = []
    for i, (label, value, color) in enumerate(zip(labels, values, colors)):
        h = (HEIGHT - PAD - 30) * value / (top or 1)
        x = PAD + 2 + i * step
        body.append(f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                    f'fill="{color}"><title>{escape(label)}: {value:,.0f}</title></rect>')
        if n <= 40:
            body.append(f'<text x="{x + step / 2:.1f}" y="{HEIGHT - PAD + 13}" text-anchor="middle">{escape(label)}</text>')
    body.append(f'<text x="{PAD - 4}" y="34" text-anchor="end">{top:,.0f}</text>')
    return _frame(title, "".join(body), x_label, y_label)


def lines(title: str, xs: list[float], series: dict[str, list[float | None]], *, x_label="", y_label="",
          mark_x: float | None = None) -> str:
    colors = ["#1f77b4", "#d62728", "#2ca02c"]
    sx, x_lo, x_hi = _scale(xs, PAD + 8, WIDTH - 20)
    body = []
    for (name, ys), color in zip(series.items(), colors):
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if not pts:
            continue
        sy, y_lo, y_hi = _scale([y for _, y in pts], HEIGHT - PAD - 6, 34)
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        body.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        body.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"><title>{name} at {x:g}: {y:.4g}'
                    f'</title></circle>' for x, y in pts)
        legend_y = 30 + 14 * list(series).index(name)
        body.append(f'<text x="{WIDTH - 16}" y="{legend_y}" text-anchor="end" fill="{color}">{escape(name)} '
                    f'({y_lo:.3g} to {y_hi:.3g})</text>')
    for x in _every(xs, 12):
        body.append(f'<line x1="{sx(x):.1f}" y1="{HEIGHT - PAD}" x2="{sx(x):.1f}" y2="{HEIGHT - PAD + 4}" stroke="#888"/>'
                    f'<text x="{sx(x):.1f}" y="{HEIGHT - PAD + 15}" text-anchor="middle">{x:g}</text>')
    first = [y for y in next(iter(series.values()), []) if y is not None]
    if len(series) == 1 and first:  # one series: its own y axis, with ticks
        sy, y_lo, y_hi = _scale(first, HEIGHT - PAD - 6, 34)
        for y in np.linspace(y_lo, y_hi, 5 if y_hi > y_lo else 1):
            body.append(f'<line x1="{PAD - 4}" y1="{sy(y):.1f}" x2="{PAD}" y2="{sy(y):.1f}" stroke="#888"/>'
                        f'<text x="{PAD - 6}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="9">{y:.3g}</text>')
    if mark_x is not None:
        body.append(f'<line x1="{sx(mark_x):.1f}" y1="30" x2="{sx(mark_x):.1f}" y2="{HEIGHT - PAD}" stroke="#999" '
                    f'stroke-dasharray="4 3"/><text x="{sx(mark_x) + 4:.1f}" y="{HEIGHT - PAD - 6}">{mark_x:g}</text>')
    return _frame(title, "".join(body), x_label, y_label)


def stacked_bars(title: str, labels: list[str], series: dict[str, list[float]], colors: list[str], *,
                 x_label="", y_label="") -> str:
    """One bar per label, stacked from the series (e.g. each cluster's share of a batch's rows)."""
    n = max(len(labels), 1)
    values = list(series.values())
    top = max((sum(column) for column in zip(*values)), default=1.0) or 1.0
    step = (WIDTH - PAD - 16) / n
    body = []
    for i, label in enumerate(labels):
        x, base = PAD + 2 + i * step, HEIGHT - PAD
        for (name, ys), color in zip(series.items(), colors):
            h = (HEIGHT - PAD - 30) * ys[i] / top
            base -= h
            body.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{max(step - 1, 1):.1f}" height="{h:.1f}" '
                        f'fill="{color}"><title>{escape(label)} · {escape(name)}: {ys[i]:.3g}</title></rect>')
    for i in sorted({0, n - 1}):
        body.append(f'<text x="{PAD + 2 + (i + 0.5) * step:.1f}" y="{HEIGHT - PAD + 13}" text-anchor="middle">'
                    f'{escape(labels[i])}</text>')
    body.append(f'<text x="{PAD - 4}" y="34" text-anchor="end">{top:.3g}</text>')
    return _frame(title, "".join(body), x_label, y_label)


def _every(xs: list[float], most: int) -> list[float]:
    """At most ``most`` of the xs, evenly spread, first and last included."""
    if len(xs) <= most:
        return list(xs)
    return [xs[i] for i in sorted(set(np.linspace(0, len(xs) - 1, most).round().astype(int)))]
