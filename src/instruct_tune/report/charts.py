"""Small PNG charts for people reading the results offline (`dvc plots` HTML needs a CDN; these do not).

Every chart is drawn on its own `Figure` with the Agg canvas (no pyplot global state, no screen), at a
fixed size and dpi, and saved without the `Software` metadata, so the same data gives the same bytes
and DVC sees no change on a rerun. Files are written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from instruct_tune.io import atomic_write_bytes

DPI = 100
SIZE = (8.0, 4.5)  # inches: 800 x 450 pixels


def _figure(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = SIZE) -> tuple[Figure, Axes]:
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save_png(fig: Figure, path: str | Path) -> Path:
    """Save `fig` as a deterministic PNG (fixed dpi, no Software tag) through an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())  # a temporary file and a rename; stale temporaries cleaned
    return path


def histogram_png(
    path: str | Path,
    series: Mapping[str, Sequence[float]],
    *,
    bins: int | Sequence[float] = 30,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "count",
    log_y: bool = False,
) -> Path:
    """Overlaid histograms, one per named series, on shared bins (a count or explicit edges)."""
    fig, ax = _figure(title, xlabel, ylabel)
    for name, values in series.items():
        if len(values):
            ax.hist(list(values), bins=bins if isinstance(bins, int) else list(bins),
                    histtype="stepfilled", alpha=0.45, label=f"{name} (n={len(values)})")
    if log_y:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend()
    return save_png(fig, path)


def bar_png(
    path: str | Path,
    labels: Sequence[str],
    values: Sequence[float] | Mapping[str, Sequence[float]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    horizontal: bool = False,
    annotate: bool = True,
) -> Path:
    """A bar chart; `values` as a mapping of series name -> values draws grouped bars with a legend."""
    groups = dict(values) if isinstance(values, Mapping) else {"": list(values)}
    fig, ax = _figure(title, xlabel, ylabel)
    width = 0.8 / max(len(groups), 1)
    positions = range(len(labels))
    for k, (name, vals) in enumerate(groups.items()):
        offsets = [p - 0.4 + width * (k + 0.5) for p in positions]
        draw = ax.barh if horizontal else ax.bar
        bars = draw(offsets, list(vals), width * 0.9, label=name or None)
        if annotate:
            ax.bar_label(bars, fmt="%g", fontsize=8, padding=2)
    if horizontal:
        ax.set_yticks(list(positions), list(labels))
        ax.invert_yaxis()  # first label on top, as read
    else:
        ax.set_xticks(list(positions), list(labels), rotation=30 if max(map(len, labels), default=0) > 8 else 0)
    if len(groups) > 1:
        ax.legend()
    return save_png(fig, path)


def line_png(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_y: bool = False,
    markers: bool = False,
) -> Path:
    """Lines, one per named series of (xs, ys); e.g. loss by step for train and validation."""
    fig, ax = _figure(title, xlabel, ylabel)
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o" if markers else None, markersize=3, label=name)
    if log_y:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend()
    return save_png(fig, path)
