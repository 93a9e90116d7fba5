"""Matplotlib figures of the triage tab (object-oriented API only: no pyplot state, thread-safe)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hardcase.review_app.workflows.insights import PairAgreement

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
