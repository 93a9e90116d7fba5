"""Matplotlib figures of the triage and monitor tabs (object-oriented API only: no pyplot state, thread-safe)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hardcase.review_app.workflows.explore import RunMap
from hardcase.review_app.workflows.insights import PairAgreement
from hardcase.review_app.workflows.monitor_views import SignalSeries, WindowMap

WIDTH, HEIGHT = 6.4, 4.6
MIN_BAR_SLOTS = 4
ANNOTATE_MAX = 24
"""Heat maps with more rows or columns than this are not annotated cell by cell."""


def _figure() -> tuple[Figure, object]:
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _tick_labels(axes, labels: Sequence[str], *, slant_over: int) -> None:
    """x tick labels, slanted when the longest is over ``slant_over`` characters."""
    slanted = max(map(len, labels), default=0) > slant_over
    axes.set_xticks(range(len(labels)), labels=labels, rotation=30 if slanted else 0,
                    ha="right" if slanted else "center")


def message_figure(title: str, text: str) -> Figure:
    """An empty plot with a title and a centred explanation."""
    figure, axes = _figure()
    axes.set_title(title)
    axes.text(0.5, 0.5, text, ha="center", va="center", wrap=True, color="0.35", fontsize=11,
              transform=axes.transAxes)
    axes.set_axis_off()
    return figure


def heatmap_figure(
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    colors: np.ndarray | None = None,
    cmap: str = "Blues",
    colorbar_label: str = "count",
) -> Figure:
    """An annotated heat map of counts; ``colors`` (same shape) sets the shading if given."""
    figure, axes = _figure()
    shading = matrix if colors is None else colors
    image = axes.imshow(shading, cmap=cmap, aspect="auto", vmin=0)
    _tick_labels(axes, col_labels, slant_over=3)
    axes.set_yticks(range(len(row_labels)), labels=row_labels)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    if max(matrix.shape, default=0) <= ANNOTATE_MAX:
        top = float(np.nanmax(shading)) if shading.size else 0.0
        for (row, col), count in np.ndenumerate(matrix):
            if count:
                dark = top > 0 and shading[row, col] > 0.55 * top
                axes.text(col, row, str(int(count)), ha="center", va="center", fontsize=8,
                          color="white" if dark else "black")
    figure.colorbar(image, ax=axes, shrink=0.8, label=colorbar_label)
    return figure


def bar_figure(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] = (0.0, 1.05),
    notes: Sequence[str] | None = None,
    reference: tuple[float, str] | None = None,
    color: str = "tab:blue",
) -> Figure:
    """Vertical bars with a note over each (NaN bars are drawn empty and noted 'n/a')."""
    figure, axes = _figure()
    heights = [0.0 if math.isnan(value) else value for value in values]
    positions = np.arange(len(labels))
    axes.bar(positions, heights, color=color, width=0.7)
    pad = max(0.0, (MIN_BAR_SLOTS - len(labels)) / 2)
    axes.set_xlim(-0.5 - pad, len(labels) - 0.5 + pad)  # a lone bar does not fill the plot
    _tick_labels(axes, labels, slant_over=4)
    axes.set_ylim(*ylim)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.axhline(0, color="0.6", linewidth=0.8)
    if reference is not None:
        axes.axhline(reference[0], color="tab:red", linestyle="--", linewidth=1, label=reference[1])
        axes.legend(loc="lower right", fontsize=8)
    notes = notes if notes is not None else [
        "n/a" if math.isnan(value) else f"{value:.2f}" for value in values
    ]
    span = ylim[1] - ylim[0]
    for position, height, note in zip(positions, heights, notes):
        axes.text(position, max(height, 0.0) + 0.02 * span, note, ha="center", va="bottom", fontsize=8)
    return figure


# --------------------------------------------------------------------------- triage figures


def decisions_figure(rows: Sequence[str], decisions: Sequence[str], matrix: np.ndarray,
                     *, n_reviewed: int, n_candidates: int) -> Figure:
    """Cause-by-class heat map of reviewers' decisions."""
    title = f"Decisions by class ({n_reviewed} of {n_candidates} candidates reviewed)"
    if not matrix.sum():
        return message_figure(title, "No decisions yet: review candidates in the Review tab.")
    return heatmap_figure(matrix, rows, [d.replace("_", " ") for d in decisions], title=title,
                          xlabel="decision", ylabel="class group", cmap="Oranges")


def confusion_figure(matrix: np.ndarray, class_names: Sequence[str]) -> Figure:
    """The pool's confusion matrix (rows: given label, shading: share of the row)."""
    total = int(matrix.sum())
    if not total:
        return message_figure("Confusion matrix of the pool", "No scored sample with a known label.")
    accuracy = np.trace(matrix) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    return heatmap_figure(matrix, class_names, class_names, colors=share,
                          title=f"Confusion matrix of the pool ({total} labelled, accuracy {accuracy:.1%})",
                          xlabel="predicted label", ylabel="given label", colorbar_label="share of the given label")


def recall_figure(class_names: Sequence[str], recall: np.ndarray, matrix: np.ndarray) -> Figure:
    """Per-class recall bars with the overall accuracy as a reference line."""
    total = int(matrix.sum())
    if not total:
        return message_figure("Recall per class", "No scored sample with a known label.")
    support = matrix.sum(axis=1)
    notes = ["n/a" if math.isnan(r) else f"{r:.2f}\n(n={n})" for r, n in zip(recall, support)]
    return bar_figure(class_names, list(recall), title="Recall per class (given label)", ylabel="recall",
                      ylim=(0.0, 1.18), notes=notes, reference=(np.trace(matrix) / total, "accuracy"))


def acceptance_figure(rates: Mapping[str, tuple[int, int]]) -> Figure:
    """Share of reviewed candidates whose suggested cause the reviewers confirmed, per cause."""
    title = "Acceptance of suggested causes"
    if not any(decided for _, decided in rates.values()):
        return message_figure(title, "No reviewed candidate has a suggested cause yet.")
    labels = list(rates)
    values = [accepted / decided if decided else math.nan for accepted, decided in rates.values()]
    notes = [f"{accepted}/{decided}" if decided else "none\nreviewed" for accepted, decided in rates.values()]
    return bar_figure(labels, values, title=title, ylabel="accepted / reviewed", ylim=(0.0, 1.15),
                      notes=notes, color="tab:green")


def kappa_figure(pairs: Sequence[PairAgreement]) -> Figure:
    """Cohen's kappa per reviewer pair on their doubly reviewed candidates."""
    title = "Agreement between reviewers (Cohen's kappa)"
    if not pairs:
        return message_figure(title, "No candidate has been judged by two reviewers yet.")
    labels = [f"{pair.reviewer_a} & {pair.reviewer_b}" for pair in pairs]
    notes = [
        ("κ n/a" if math.isnan(pair.kappa) else f"κ={pair.kappa:.2f}") + f"\n{pair.observed:.0%} of {pair.n_shared}"
        for pair in pairs
    ]
    return bar_figure(labels, [pair.kappa for pair in pairs], title=title, ylabel="kappa",
                      ylim=(-1.0, 1.3), notes=notes, color="tab:purple")


# --------------------------------------------------------------------------- monitor figures

ALERT_COLOR = "tab:red"
ALERT_SHADE = "#f6d5d5"


def _shade_alerts(axes, alert_windows: Sequence[int]) -> None:
    """A light red band behind every alerting window."""
    for window in alert_windows:
        axes.axvspan(window - 0.5, window + 0.5, color=ALERT_SHADE, zorder=0, linewidth=0)


def signal_timelines_figure(series: Sequence[SignalSeries], alert_windows: Sequence[int]) -> Figure:
    """One small panel per signal: its statistic by window, its threshold dashed, alerts in red.

    Windows that alerted (any signal) are shaded; the points where this signal alerted are red.
    """
    title = "Signals by window"
    if not series:
        return message_figure(title, "No signal stored for this run yet.")
    columns = min(3, len(series))
    rows = math.ceil(len(series) / columns)
    figure = Figure(figsize=(WIDTH * 1.6, 2.1 * rows + 0.5), dpi=100, layout="constrained")
    figure.suptitle(f"{title} (dashed: threshold, red: alert)")
    grid = figure.subplots(rows, columns, squeeze=False, sharex=True)
    for axes, signal in zip(grid.flat, series):
        _shade_alerts(axes, alert_windows)
        axes.plot(signal.windows, signal.statistic, color="tab:blue", linewidth=1.2, marker="o", markersize=2.5)
        axes.step(signal.windows, signal.threshold, where="mid", color="0.3", linestyle="--", linewidth=1)
        alerted = signal.alert & np.isfinite(signal.statistic)
        axes.scatter(signal.windows[alerted], signal.statistic[alerted], color=ALERT_COLOR, s=28, zorder=3)
        side = "alerts above" if signal.side == "above" else "alerts below"
        axes.set_title(f"{signal.signal.replace('_', ' ')} ({side})", fontsize=9)
        axes.tick_params(labelsize=7)
    for axes in grid.flat[len(series):]:
        axes.set_axis_off()
    for axes in grid[-1]:
        axes.set_xlabel("window", fontsize=8)
    return figure


def accuracy_timeline_figure(windows: Sequence[int], estimated: Sequence[float | None],
                             low: Sequence[float | None], high: Sequence[float | None],
                             true: Sequence[float | None], alert_windows: Sequence[int]) -> Figure:
    """Estimated accuracy by window with its interval band, and the true accuracy where known."""
    title = "Accuracy by window"
    as_array = lambda values: np.array([np.nan if v is None else v for v in values], dtype=np.float64)  # noqa: E731
    estimated, low, high, true = map(as_array, (estimated, low, high, true))
    if not len(windows) or not (np.isfinite(estimated).any() or np.isfinite(true).any()):
        return message_figure(title, "No accuracy estimate stored for this run.")
    figure, axes = _figure()
    x = np.asarray(windows)
    _shade_alerts(axes, alert_windows)
    axes.fill_between(x, low, high, color="tab:blue", alpha=0.2, linewidth=0, label="interval")
    axes.plot(x, estimated, color="tab:blue", marker="o", markersize=3, label="estimated")
    if np.isfinite(true).any():
        known = np.isfinite(true)
        axes.plot(x[known], true[known], color="black", marker="s", markersize=3, linestyle=":", label="true")
    if len(alert_windows):
        axes.plot([], [], color=ALERT_SHADE, linewidth=8, label="alert")
    values = np.concatenate([a[np.isfinite(a)] for a in (estimated, low, high, true)])
    axes.set_ylim(max(0.0, float(values.min()) - 0.05), min(1.0, float(values.max()) + 0.05) + 0.01)
    axes.set_xlabel("window")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.legend(loc="lower left", fontsize=8)
    return figure


def canary_figure(class_names: Sequence[str], windows: np.ndarray, matrix: np.ndarray,
                  canaries: Sequence[str]) -> Figure:
    """Which classes moved in which window (rows earliest mover first); the first movers in bold.

    ``matrix`` holds 0 (still), 1 (moved) or 2 (named by an alerting signal).
    """
    from matplotlib.colors import ListedColormap

    title = "Classes that moved, first movers first"
    if not len(class_names) or not matrix.any():
        return message_figure(title, "No class has moved in any window.")
    figure = Figure(figsize=(WIDTH, max(2.2, 0.32 * len(class_names) + 1.4)), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    colors = ListedColormap(["#f4f4f4", "#f5b971", ALERT_COLOR])
    axes.imshow(matrix, cmap=colors, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
    axes.set_yticks(range(len(class_names)), labels=class_names)
    for label in axes.get_yticklabels():
        if label.get_text() in canaries:
            label.set_fontweight("bold")
            label.set_color(ALERT_COLOR)
    step = max(1, math.ceil(len(windows) / 20))
    axes.set_xticks(range(0, len(windows), step), labels=[str(w) for w in windows[::step]])
    for row, name in enumerate(class_names):
        moved = np.flatnonzero(matrix[row])
        if name in canaries and len(moved):
            axes.scatter([moved[0]], [row], marker="*", s=90, color="black", zorder=3)
    axes.set_xlabel("window")
    axes.set_title(title + " (★ canary: first to move; red: alerting signal)", fontsize=10)
    return figure


def embedding_map_figure(window_map: WindowMap) -> Figure:
    """A window's samples on the reference's 2-D map: reference in light grey, the window
    coloured by predicted class, out-of-distribution samples outlined."""
    window = window_map.window
    title = f"Window {window.index} ({window.t}) on the reference map"
    if not len(window_map.xy) and not len(window_map.reference_xy):
        return message_figure(title, "No point to draw.")
    figure = Figure(figsize=(WIDTH * 1.15, HEIGHT * 1.15), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    if len(window_map.reference_xy):
        axes.scatter(window_map.reference_xy[:, 0], window_map.reference_xy[:, 1], s=6, color="0.85",
                     linewidths=0, label="reference", zorder=1)
    colors = _class_colors(len(window_map.class_names))
    for k in np.unique(window_map.predicted):
        chosen = window_map.predicted == k
        name = window_map.class_names[k] if 0 <= k < len(window_map.class_names) else f"class {k}"
        axes.scatter(window_map.xy[chosen, 0], window_map.xy[chosen, 1], s=14, color=colors[k % len(colors)],
                     linewidths=0, label=name, zorder=2)
    if window_map.ood.any():
        outlined = window_map.xy[window_map.ood]
        axes.scatter(outlined[:, 0], outlined[:, 1], s=46, facecolors="none", edgecolors="black", linewidths=1.1,
                     label="out of distribution", zorder=3)
    axes.set_title(title + (" — alert" if window.alert else ""), color=ALERT_COLOR if window.alert else "black")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, title="predicted", title_fontsize=8,
                markerscale=1.4, frameon=False)
    return figure


def _class_colors(n: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if n <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(max(n, 1))]


# --------------------------------------------------------------------------- explore tab

HISTOGRAM_BINS = 50
MAP_SIZE = (9.0, 6.0)
MAP_DPI = 100
CAUSE_COLORS = {"augment": "tab:blue", "rare": "tab:purple", "imbalance": "tab:orange", "mislabel": "tab:red",
                "unclear": "tab:olive", None: "0.45"}


def score_histogram_figure(values: np.ndarray, candidate_values: np.ndarray, *, cut: float | None, title: str,
                           xlabel: str) -> Figure:
    """Histogram of a score over every scored sample (log counts), the candidates' share in
    colour, and the candidate cut as a dashed line (candidates are picked at or below it)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return message_figure(title, "No sample has this score in this run.")
    figure, axes = _figure()
    figure.set_size_inches(WIDTH, HEIGHT * 0.75)
    bins = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    axes.hist(values, bins=bins, color="0.7", label=f"all scored samples ({len(values):,})")
    picked = np.asarray(candidate_values, dtype=np.float64)
    picked = picked[np.isfinite(picked)]
    if len(picked):
        axes.hist(picked, bins=bins, color="tab:red", alpha=0.85, label=f"candidates ({len(picked):,})")
    if cut is not None:
        axes.axvline(cut, color="black", linestyle="--", linewidth=1.2, label=f"candidate cut {cut:.3f}")
    axes.set_yscale("log")
    axes.set_xlim(0, 1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("samples (log)")
    axes.set_title(title)
    axes.legend(fontsize=8, frameon=False)
    return figure


def run_map_image(run_map: RunMap, *, color_by: str = "class") -> tuple[np.ndarray, np.ndarray]:
    """The run's 2-D map as an RGB image, and where each candidate landed on it.

    Samples are small points coloured by class (``color_by='class'``) or grey (``'cause'``);
    candidates are larger outlined points coloured by class or by suggested cause.

    Returns
    -------
    image : np.ndarray, uint8, shape (H, W, 3)
    positions : np.ndarray, float64, shape (n_candidates, 2)
        Each candidate's (x, y) pixel in ``image`` (y downwards), in ``run_map.candidate_id`` order.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.lines import Line2D

    figure = Figure(figsize=MAP_SIZE, dpi=MAP_DPI, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    names = list(run_map.class_names)
    extra = sorted({str(label) for label in run_map.label} - set(names))
    order = {name: k for k, name in enumerate(names + extra)}
    colors = _class_colors(len(order))
    handles = []
    if color_by == "class":
        for name, k in order.items():
            chosen = run_map.label == name
            if chosen.any():
                axes.scatter(run_map.xy[chosen, 0], run_map.xy[chosen, 1], s=6, color=colors[k % len(colors)],
                             alpha=0.5, linewidths=0, rasterized=True, zorder=1)
                handles.append(Line2D([], [], marker="o", linestyle="", color=colors[k % len(colors)], label=name))
        candidate_colors = [colors[order.get(str(name), 0) % len(colors)] for name in run_map.candidate_class]
    else:
        axes.scatter(run_map.xy[:, 0], run_map.xy[:, 1], s=6, color="0.78", linewidths=0, rasterized=True, zorder=1)
        candidate_colors = [CAUSE_COLORS.get(cause if isinstance(cause, str) else None, "0.45")
                            for cause in run_map.candidate_cause]
        shown = {cause if isinstance(cause, str) else None for cause in run_map.candidate_cause}
        handles = [Line2D([], [], marker="o", linestyle="", color=color, markeredgecolor="black",
                          label=cause or "no suggestion") for cause, color in CAUSE_COLORS.items() if cause in shown]
    if len(run_map.candidate_xy):
        axes.scatter(run_map.candidate_xy[:, 0], run_map.candidate_xy[:, 1], s=44, c=candidate_colors,
                     edgecolors="black", linewidths=0.9, zorder=3)
    handles.append(Line2D([], [], marker="o", linestyle="", color="white", markeredgecolor="black",
                          markersize=7, label="candidate (click to review)"))
    axes.set_xticks([])
    axes.set_yticks([])
    method = "t-SNE" if run_map.method == "tsne" else "PCA"
    axes.set_title(f"{method} map of {run_map.n_points:,} samples' embeddings "
                   f"({len(run_map.xy):,} drawn), {len(run_map.candidate_xy)} candidates")
    axes.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False,
                title="class" if color_by == "class" else "suggested cause", title_fontsize=8)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    height = image.shape[0]
    pixels = axes.transData.transform(run_map.candidate_xy) if len(run_map.candidate_xy) else np.empty((0, 2))
    positions = np.column_stack([pixels[:, 0], height - pixels[:, 1]]) if len(pixels) else np.empty((0, 2))
    return image, positions
