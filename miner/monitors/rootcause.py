"""The root cause of an alerting window, as a value the CLI, store and UI can keep.

The statistics side lives here: :func:`statistical_cause` names an environment change or an
input-statistics change (a units or pipeline change) straight from a
:class:`~hardcase.miner.monitors.WindowReport`. Whether one geometric transform explains the
window needs the model: :func:`hardcase.models.drift.explain_window` fits one shared transform
on the window's low-confidence samples and returns a :class:`RootCause` of kind ``transform``
or ``rare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hardcase.miner.monitors._base import _jsonable
from hardcase.miner.vocabulary import ROOT_CAUSES

__all__ = ["ROOT_CAUSES", "RootCause", "statistical_cause"]



@dataclass(frozen=True)
class RootCause:
    """What explains an alerting window.

    Attributes
    ----------
    kind : str
        One of :data:`ROOT_CAUSES`.
    message : str
        One sentence, e.g. "a perspective tilt of 0.20 toward 210° restores 85% of the 60
        low-confidence samples: the camera tilted about 0.20 toward 30°".
    transform : dict or None
        The restoring transform (:meth:`hardcase.miner.transform.Transform.to_dict`).
    camera : dict or None
        The camera motion it undoes: ``{"perspective": s, "direction": d}`` for a tilt (the
        restoring tilt's opposite direction), ``{"rotate": a}`` for a rotation.
    restored_share : float or None
        Share of the low-confidence samples the transform makes confident (None for a camera
        motion fitted forward: its ``detail["explained_share"]`` is the share of the window's
        mean-image change it reproduces).
    null_share : float or None
        The best share any transform of the grid reaches on the reference's own low-confidence
        samples (what "restoring" gives by chance).
    n_samples : int
        Low-confidence samples examined.
    detail : dict
    """

    kind: str
    message: str
    transform: dict[str, float] | None = None
    camera: dict[str, float] | None = None
    restored_share: float | None = None
    null_share: float | None = None
    n_samples: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ROOT_CAUSES:
            raise ValueError(f"kind must be one of {ROOT_CAUSES}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({"kind": self.kind, "message": self.message, "transform": self.transform,
                          "camera": self.camera, "restored_share": self.restored_share,
                          "null_share": self.null_share, "n_samples": self.n_samples, "detail": self.detail})


def statistical_cause(report, *, soft: bool = False) -> RootCause | None:
    """An environment change or an input-statistics change behind a window, or None.

    Parameters
    ----------
    report : WindowReport
    soft : bool
        Also name ``pipeline`` when the integrity signal alerted on soft moves alone (a mean
        intensity or contrast a few standard errors off, one class's statistics): what
        :func:`hardcase.models.drift.explain_window` does once no shared transform explains the
        window. By default only pipeline-grade failures count (shape, dtype, NaNs, values
        outside the reference's range, blank images, a gross change of intensity or contrast):
        a tilting camera lowers the contrast a little too, and that is no pipeline change.

    Returns
    -------
    RootCause or None
        ``environment`` when the library versions or the model hash differ from the
        reference's; ``pipeline`` when the input-integrity checks failed as above (the message
        quotes them, e.g. "mean intensity 0.13 where the reference has 33.3"); else None (ask
        :func:`hardcase.models.drift.explain_window` whether a transform explains it).
    """
    if report.environment_changes:
        changes = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in report.environment_changes.items())
        return RootCause(kind="environment", message=f"the environment changed: {changes}",
                         detail={"changes": report.environment_changes})
    integrity = report.signals.get("integrity")
    if integrity is None or not integrity.alert:
        return None
    failed = integrity.detail.get("failed", {})
    grade = [key for key in integrity.detail.get("pipeline", list(failed)) if key in failed]
    if grade:
        text = "; ".join(failed[key] for key in grade)
        return RootCause(kind="pipeline", message=f"the input statistics moved (a units or pipeline change): {text}",
                         detail={"failed": failed, "pipeline": grade})
    if soft:
        text = "; ".join(failed.values()) if failed else integrity.message
        return RootCause(kind="pipeline", message=f"the input statistics moved: {text}",
                         detail={"failed": failed, "pipeline": []})
    return None
