"""The cause rules: one suggested cause per hard example, with its evidence in words.

Vocabulary as in :mod:`hardcase.miner.scores`: N pool examples, K classes, ``pred_probs``
(N, K), ``labels`` (N,) with ``-1`` for an unknown label; ``embeddings`` (N, D) from the
model's embedding layer; ``train_embeddings`` (T, D) and ``train_labels`` (T,) of the
training data.

Four rules, each a test on evidence a reviewer can check, tried in :data:`RULE_ORDER`
(imbalance, mislabel, augment, rare):

``mislabel``
    Confident learning plus the embedding space. The model predicts another class ``j``
    with at least ``j``'s per-class confident threshold (cleanlab's ``t_j``: the mean
    self-confidence of the pool's examples labelled, or else predicted, ``j``), the example
    is a *typical* member of ``j`` (:mod:`hardcase.miner.causes.density`), it lies nearer to
    ``j`` than to its given class (each measured in units of the class's own spread), the
    plurality of its ``k`` nearest training neighbours are labelled ``j``, and the pool does not
    back its label: fewer of its ``k`` nearest other labelled pool examples carry its label than
    carry ``j`` (or none do). A wrong label is isolated among the image's look-alikes; an image
    the model misreads for its unusual style (another writer, another camera) usually has
    look-alikes in the pool that carry its own label
    (:func:`~hardcase.miner.causes.neighbours.pool_neighbour_votes`).
``imbalance``
    The given class is under-represented in the training data *and* under-predicted on the
    pool, both significantly, and the example was pushed into another class
    (:func:`hardcase.miner.causes.imbalance.class_imbalance`).
``augment``
    A small geometric transform restores the given label: the model then predicts it
    confidently and the transformed example is a typical member of the class
    (:class:`TransformEvidence`, produced by :mod:`models.transform_search`).
``rare``
    The example is atypical of its class and none of the tests before explains it (a
    typical member of another class is claimed by ``mislabel`` first; no transform restores
    it).

The first test that holds is the suggestion. For a class the model barely learnt (flagged by
the imbalance test) the model's confident "it is a j" is the symptom itself, not evidence of a
wrong label, so imbalance comes first; otherwise a confident relabel explains a failure better
than a transform that happens to work on it, and a transform that restores it explains it
better than the example being atypical. An example no test claims is ``unclear``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from hardcase.miner._validation import (
    check_embeddings,
    check_indices,
    check_int_array_1d,
    check_labels,
    check_positive_int,
    check_pred_probs,
    check_row_array,
    check_thresholds,
    check_values_1d,
)
from hardcase.miner.causes._common import (
    _TINY,
    DEFAULT_ALPHA,
    DEFAULT_K,
    _check_alpha,
    _check_metric,
    _check_same_width,
    _check_train_labels,
)
from hardcase.miner.causes.density import (
    ClassDensity,
    _check_density,
    _compute_class_density,
    _compute_typicality,
)
from hardcase.miner.causes.imbalance import ClassImbalance, _compute_imbalance
from hardcase.miner.causes.label_issues import ContrastEvidence
from hardcase.miner.causes.neighbours import (
    _compute_knn,
    _compute_pool_votes,
    _compute_votes,
    _prepare,
)
from hardcase.miner.scores import _compute_confident_thresholds
from hardcase.miner.transform import Transform
from hardcase.miner.vocabulary import CAUSES, SUGGESTED_CAUSES, UNCLEAR

__all__ = [
    "RULE_ORDER",
    "SUGGESTED",
    "CauseSuggestions",
    "TransformEvidence",
    "describe_transform",
    "suggest_causes",
]

#: The priority of the cause rules: :func:`suggest_causes` tries them in this order and the
#: first that holds is the suggestion. A priority, not the vocabulary (that is
#: :data:`hardcase.miner.vocabulary.CAUSES`, whose order is the schema's).
RULE_ORDER = ("imbalance", "mislabel", "augment", "rare")
assert sorted(RULE_ORDER) == sorted(CAUSES), "RULE_ORDER must order exactly the vocabulary's CAUSES"
#: Everything :func:`suggest_causes` may answer, in rule order: the order of
#: :meth:`CauseSuggestions.counts` (and so of the counts the workflows print). As a set it is
#: :data:`hardcase.miner.vocabulary.SUGGESTED_CAUSES`.
SUGGESTED = (*RULE_ORDER, UNCLEAR)
assert sorted(SUGGESTED) == sorted(SUGGESTED_CAUSES)


def _as_class_names(class_names, n_classes: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(n_classes)]
    names = [str(name) for name in class_names]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names but pred_probs has K={n_classes} columns")
    return names


@dataclass(frozen=True)
class TransformEvidence:
    """What a transform search found for each of M candidates (see models.transform_search).

    Attributes
    ----------
    target : np.ndarray, shape (M,), int64
        The class the search tried to restore (the given label, else the prediction).
    family : np.ndarray, shape (M,), str
        ``rotate``, ``perspective``, ``scale``, ``shift``, ``skew``, ``combined`` or ``none`` (identity).
    transform : tuple of dict
        The suggested transform as ``Transform.to_dict()``: the most typical restoring one,
        else the one giving the target the highest probability.
    before, after : np.ndarray, shape (M,), float64
        Probability of the target without and with the suggested transform.
    predicted_after : np.ndarray, shape (M,), int64
        The model's class for the transformed image.
    typicality : np.ndarray, shape (M,), float64
        Typicality p-value of the transformed image's embedding for the target (NaN unknown).
    stable : np.ndarray, shape (M,), bool
        The prediction stays on the target under neighbouring parameters.
    restores : np.ndarray, shape (M,), bool
        The transform restores the target: predicted at least at the target's confident
        threshold, typical, stable, beyond what the search does on clean samples, and the
        untransformed image was not already restored.
    smallest : tuple of (dict or None)
        The smallest restoring transform found (None when nothing restores).
    null_rate : float or None
        Share of clean reference examples that the same search "restores" to a wrong class.
    null_threshold : float or None
        The ``p_target x typicality`` a restoration must exceed: the ``1 - alpha`` quantile of
        what the search reaches on those references (None without a calibration).
    stats : dict
        Timing and counts (JSON-able).
    """

    target: np.ndarray
    family: np.ndarray
    transform: tuple
    before: np.ndarray
    after: np.ndarray
    predicted_after: np.ndarray
    typicality: np.ndarray
    stable: np.ndarray
    restores: np.ndarray
    smallest: tuple
    null_rate: float | None = None
    null_threshold: float | None = None
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(np.asarray(self.target))
        for f in fields(self):
            if f.name in ("null_rate", "null_threshold", "stats"):
                continue
            value = getattr(self, f.name)
            length = len(value)
            if length != m:
                raise ValueError(f"TransformEvidence.{f.name} has {length} entries but target has {m}")
            if isinstance(value, np.ndarray) or not isinstance(value, tuple):
                arr = np.array(value)
                arr.setflags(write=False)
                object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return int(len(self.target))


def describe_transform(transform: dict | None) -> str:
    """Words for a ``Transform.to_dict()`` as stored in the evidence (keys may be missing):
    :meth:`Transform.describe <hardcase.miner.transform.Transform.describe>` of it."""
    return Transform.from_dict(transform).describe()


def _check_transform_evidence(evidence, m: int) -> TransformEvidence | None:
    if evidence is None:
        return None
    if not isinstance(evidence, TransformEvidence):
        raise TypeError(
            f"transform_evidence must be a TransformEvidence (models.transform_search), got {type(evidence).__name__}"
        )
    if len(evidence) != m:
        raise ValueError(f"transform_evidence has {len(evidence)} entries but there are {m} candidates")
    return evidence


# ------------------------------------------------------------------------ suggestions


@dataclass(frozen=True)
class CauseSuggestions:
    """One suggested cause per candidate; arrays of shape (M,), read-only.

    Attributes
    ----------
    indices : np.ndarray, int64
        Pool rows of the candidates.
    cause : np.ndarray, str
        One of :data:`hardcase.miner.vocabulary.SUGGESTED_CAUSES`.
    confidence : np.ndarray, float64
        In [0, 1].
    suggested_label : np.ndarray, int64
        The class to relabel to for ``mislabel``, else -1.
    evidence : tuple of dict
        JSON-able evidence per candidate: a plain sentence for reviewers under ``"summary"``
        (what to look for, no statistics) and the numbers behind it under ``"text"``.
    """

    indices: np.ndarray
    cause: np.ndarray
    confidence: np.ndarray
    suggested_label: np.ndarray
    evidence: tuple

    def __post_init__(self) -> None:
        m = len(self.indices)
        for f in fields(self):
            value = getattr(self, f.name)
            if len(value) != m:
                raise ValueError(f"CauseSuggestions.{f.name} has {len(value)} entries, expected {m}")
            if f.name != "evidence":
                arr = np.array(value)
                arr.setflags(write=False)
                object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return int(len(self.indices))

    def counts(self) -> dict[str, int]:
        """How many candidates got each cause."""
        return {cause: int(np.sum(self.cause == cause)) for cause in SUGGESTED}


def _f(value) -> float | None:
    """A JSON-safe float (None for NaN/inf)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _rounded(value, digits: int = 4) -> float | None:
    value = _f(value)
    return None if value is None else round(value, digits)


def _compute_suggestions(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    cand: np.ndarray,
    cand_emb: np.ndarray,
    pool_emb,
    density: ClassDensity,
    evidence: TransformEvidence | None,
    imbalance: ClassImbalance,
    thresholds: np.ndarray,
    names: list[str],
    train_ids: np.ndarray,
    alpha: float,
    k: int,
    contrast: ContrastEvidence | None = None,
) -> CauseSuggestions:
    n_classes = pred_probs.shape[1]
    probs = pred_probs[cand]
    y = labels[cand]
    m = len(cand)
    pred = probs.argmax(axis=1)
    rows = np.arange(m)
    p_pred = probs[rows, pred]
    known = y >= 0
    p_given = np.where(known, probs[rows, np.clip(y, 0, None)], np.nan)
    ref_class = np.where(known, y, pred)  # the class the example should belong to

    prepared = _prepare(cand_emb, density.metric)
    typ_ref = _compute_typicality(prepared, ref_class, density)
    typ_pred = _compute_typicality(prepared, pred, density)
    k_all = min(density.k, max(int(np.sum(density.labels >= 0)), 1))
    _, nn_idx = _compute_knn(prepared, density.embeddings, min(k_all, density.embeddings.shape[0]), density.metric)
    nn_labels = density.labels[nn_idx]
    votes = _compute_votes(nn_labels, n_classes)
    vote_top = votes.argmax(axis=1)
    pool_votes = _compute_pool_votes(prepared, cand, pool_emb, labels, k, density.metric, n_classes)

    n_labelled = int(np.sum(labels >= 0))
    pool_k = np.minimum(k, n_labelled - known.astype(np.int64))  # the example is not its own neighbour
    causes = np.empty(m, dtype=object)
    confidence = np.zeros(m)
    suggested = np.full(m, -1, dtype=np.int64)
    records = []
    for i in range(m):
        yi, ji = int(y[i]), int(pred[i])
        ri = int(ref_class[i])
        misclassified = bool(known[i] and ji != yi)
        pv_ref, pv_pred = float(typ_ref.pvalue[i]), float(typ_pred.pvalue[i])
        nd_ref, nd_pred = float(typ_ref.distance[i]), float(typ_pred.distance[i])
        vote_j = float(votes[i, ji])
        # the pool's own look-alikes: a wrong label is isolated among them, an unusual image
        # (another writer, another camera) usually has look-alikes carrying its label
        pool_given = float(pool_votes[i, yi]) if yi >= 0 else 0.0
        pool_j = float(pool_votes[i, ji])
        pool_backs_label = pool_given > 0 and pool_given >= pool_j

        # mislabel: a confident member of another class, more typical of it than of its label,
        # neighbours agree
        if contrast is None:
            more_typical = pv_pred >= alpha and nd_ref > nd_pred
            plausible = min(1.0, pv_pred / alpha)
        else:  # the contrast of the exported label quality: training- and pool-calibrated
            # (the pool's alone for a class too rare in training to say what is typical of it)
            weight_i = float(contrast.pool_weight[i] if yi >= 0 and imbalance.under_represented[yi]
                             else contrast.weight[i])
            more_typical = weight_i > 0.5 and pv_pred >= alpha and nd_ref > nd_pred
            plausible = weight_i * min(1.0, pv_pred / alpha)
        mis_test = bool(
            misclassified
            and p_pred[i] >= thresholds[ji]
            and more_typical
            and vote_top[i] == ji
            and vote_j > 0
            and not pool_backs_label
        )
        mis_score = (1.0 - float(p_given[i])) * plausible * vote_j if misclassified else 0.0

        # augment: the transform search restores the target
        aug_test, aug_score = False, 0.0
        if evidence is not None:
            after = float(evidence.after[i])
            typ_after = float(np.nan_to_num(evidence.typicality[i], nan=0.0))
            null = evidence.null_rate if evidence.null_rate is not None else 0.0
            aug_test = bool(evidence.restores[i])
            aug_score = after * min(1.0, typ_after / alpha) * (1.0 - null) if evidence.family[i] != "none" else 0.0

        # imbalance: the given class is flagged and this example was pushed out of it
        imb_test = bool(misclassified and imbalance.imbalanced[yi])
        imb_score = 0.0
        if misclassified:
            share = imbalance.train_share[yi]
            deficit = 1.0 - share / imbalance.fair_share if np.isfinite(share) else 1.0 - imbalance.predicted_vs_given[yi]
            imb_score = float(np.clip(deficit, 0.0, 1.0)) * (1.0 - float(p_given[i])) if imb_test else 0.0

        # rare: atypical of its class (tried last: a typical member of another class is mislabel's);
        # the less sure the more typical it is of what it is mistaken for
        rare_test = bool(pv_ref < alpha)
        rare_score = 1.0 - min(1.0, pv_ref / alpha)
        if ji != ri:
            rare_score *= 1.0 - min(1.0, pv_pred / alpha)

        if mis_test and aug_test:
            # both explain it: keep the one under which the example is the more typical member
            # of its class (the restored image for the given label, or the image as it is for j)
            if float(np.nan_to_num(evidence.typicality[i], nan=0.0)) > pv_pred:
                mis_test = False
            else:
                aug_test = False
        tests = {"mislabel": mis_test, "augment": aug_test, "imbalance": imb_test, "rare": rare_test}
        scores = {"mislabel": mis_score, "augment": aug_score, "imbalance": imb_score, "rare": rare_score}
        chosen = next((c for c in RULE_ORDER if tests[c]), UNCLEAR)
        if chosen == UNCLEAR:
            conf = 1.0 - max(scores.values())
        else:
            conf = scores[chosen]
        causes[i] = chosen
        confidence[i] = float(np.clip(conf, 0.0, 1.0))
        if chosen == "mislabel":
            suggested[i] = ji

        k_i = int(np.sum(nn_labels[i] >= 0))
        neighbour_names = [names[c] if c >= 0 else None for c in nn_labels[i]]
        density_ids = [int(train_ids[t]) for t in typ_ref.neighbours[i] if t >= 0]
        record: dict[str, Any] = {
            "cause": chosen,
            "confidence": round(confidence[i], 4),
            "given": {"label": names[yi] if yi >= 0 else None, "probability": _rounded(p_given[i])},
            "predicted": {
                "label": names[ji], "probability": _rounded(p_pred[i]), "threshold": _rounded(thresholds[ji]),
            },
            "neighbours": {
                "k": k_i,
                "labels": neighbour_names,
                "train_ids": [int(train_ids[t]) for t in nn_idx[i]],
                "agreement": _rounded(vote_j),
                "given_agreement": _rounded(votes[i, yi]) if yi >= 0 else None,
            },
            "pool_neighbours": {
                "k": int(pool_k[i]),
                "agreement": _rounded(pool_j),
                "given_agreement": _rounded(pool_given) if yi >= 0 else None,
            },
            "density": {
                "class": names[ri],
                "distance": _rounded(nd_ref),
                "pvalue": _rounded(pv_ref),
                "percentile": _rounded(100.0 * (1.0 - pv_ref)) if math.isfinite(pv_ref) else None,
                "train_ids": density_ids,
                "predicted_distance": _rounded(nd_pred),
                "predicted_pvalue": _rounded(pv_pred),
            },
            "label_weight": _rounded(contrast.weight[i]) if contrast is not None else None,
            "label_weight_pool": _rounded(contrast.pool_weight[i]) if contrast is not None else None,
            "tests": tests,
            "scores": {name: round(float(np.clip(value, 0.0, 1.0)), 4) for name, value in scores.items()},
        }
        if yi >= 0:
            record["imbalance"] = {
                "class": names[yi],
                "train_share": _rounded(imbalance.train_share[yi]),
                "fair_share": _rounded(imbalance.fair_share),
                "recall": _rounded(imbalance.recall[yi]),
                "recall_others": _rounded(imbalance.recall_others[yi]),
                "predicted_vs_given": _rounded(imbalance.predicted_vs_given[yi]),
                "pushed_into": names[int(imbalance.pushed_into[yi])] if imbalance.pushed_into[yi] >= 0 else None,
                "under_represented": bool(imbalance.under_represented[yi]),
                "under_predicted": bool(imbalance.under_predicted[yi]),
            }
        if evidence is not None:
            record.update(
                {
                    "transform": dict(evidence.transform[i]) if evidence.transform[i] else None,
                    "family": str(evidence.family[i]),
                    "target": names[int(evidence.target[i])] if evidence.target[i] >= 0 else None,
                    "before": _rounded(evidence.before[i]),
                    "after": _rounded(evidence.after[i]),
                    "predicted_after": names[int(evidence.predicted_after[i])],
                    "restored_typicality": _rounded(evidence.typicality[i]),
                    "stable": bool(evidence.stable[i]),
                    "restores": bool(evidence.restores[i]),
                    "smallest": dict(evidence.smallest[i]) if evidence.smallest[i] else None,
                    "null_rate": _rounded(evidence.null_rate),
                    "null_threshold": _rounded(evidence.null_threshold),
                    "target_threshold": _rounded(thresholds[int(evidence.target[i])]) if evidence.target[i] >= 0 else None,
                }
            )
        record["summary"] = _plain_sentence(chosen, record)
        record["text"] = _sentence(chosen, record, names, k_i, imbalance, alpha)
        records.append(record)
    return CauseSuggestions(
        indices=cand.astype(np.int64), cause=causes.astype(str), confidence=confidence,
        suggested_label=suggested, evidence=tuple(records),
    )


def _neighbour_phrase(record: dict, k: int) -> str:
    labels = [label for label in record["neighbours"]["labels"] if label is not None]
    if not labels:
        return "no labelled training neighbours"
    values, counts = np.unique(np.array(labels, dtype=object).astype(str), return_counts=True)
    top = int(counts.argmax())
    return f"{int(counts[top])} of {k} nearest training images are '{values[top]}'"


def _pool_phrase(record: dict) -> str:
    """How many of the example's nearest pool look-alikes carry its label ("" without a label)."""
    pool, given = record["pool_neighbours"], record["given"]["label"]
    if given is None or not pool["k"]:
        return ""
    count = int(round(pool["given_agreement"] * pool["k"]))
    if count == 0:
        return f"none of its {pool['k']} nearest pool images is labelled '{given}'"
    return f"{count} of its {pool['k']} nearest pool images {'is' if count == 1 else 'are'} labelled '{given}' too"


def _transform_phrase(record: dict) -> str:
    if record.get("transform") is None or record.get("family") in (None, "none"):
        return ""
    phrase = (
        f"{describe_transform(record['transform'])} gives '{record['predicted_after']}' at "
        f"{record['after']:.2f} (was {record['before']:.2f})"
    )
    if record.get("restored_typicality") is not None:
        phrase += f", typicality p={record['restored_typicality']:.2f}"
    return phrase


def _unconvincing(record: dict, alpha: float) -> str:
    """Why the best transform found is no restoration: the first of the search's tests it fails."""
    target, after = record["target"], record["after"]
    typ = record.get("restored_typicality")
    if record["predicted_after"] != target:
        return f"the model then says '{record['predicted_after']}', not '{target}'"
    if record.get("target_threshold") is not None and after < record["target_threshold"]:
        return f"{after:.2f} is under the confident threshold of '{target}' ({record['target_threshold']:.2f})"
    if typ is not None and typ < alpha:
        return f"the result is not a typical '{target}' (p={typ:.3f} < {alpha:g})"
    if not record.get("stable"):
        return "a slightly different rotation loses it again"
    if record.get("null_threshold") is not None:
        return (f"it is no more convincing than the false fixes the same search makes on clean images: "
                f"probability x typicality {after * (typ if typ is not None else 1.0):.2f}, not above "
                f"{record['null_threshold']:.2f}")
    return "it is not convincing"


def _majority_label(record: dict) -> str | None:
    labels = [str(label) for label in record["neighbours"]["labels"] if label is not None]
    if not labels:
        return None
    values, counts = np.unique(np.array(labels, dtype=object), return_counts=True)
    return str(values[int(counts.argmax())])


def _plain_sentence(cause: str, record: dict) -> str:
    """One sentence a reviewer can check by looking at the image and the sliders (no statistics)."""
    given = record["given"]["label"]
    predicted = record["predicted"]["label"]
    if cause == "mislabel":
        return (f"it looks like the '{predicted}'s in training, not the '{given}'s: "
                f"the label '{given}' is probably wrong")
    if cause == "augment":
        target = record.get("target") or given or predicted
        return f"{describe_transform(record['transform'])} makes it a clear '{target}'"
    if cause == "imbalance":
        return (f"'{given}' is rare in training, and the model pushes it into '{predicted}', "
                "a class it has seen far more of")
    if cause == "rare":
        return "nothing like it in training: the model has not seen this kind of image"
    nearest = _majority_label(record)
    hint = f"; its nearest training images are mostly '{nearest}'" if nearest is not None else ""
    return f"no cause is clear: the model says '{predicted}'{hint}"


def _sentence(cause: str, record: dict, names: list[str], k: int, imbalance: ClassImbalance, alpha: float) -> str:
    given = record["given"]["label"]
    pred = record["predicted"]
    dens = record["density"]
    neighbours = _neighbour_phrase(record, k)
    if cause == "mislabel":
        if dens["distance"] is None:
            farther = f"there are no '{given}' training images to compare with"
        else:
            ratio = dens["distance"] / max(dens["predicted_distance"], _TINY)
            farther = f"{ratio:.1f}x farther from the '{given}' training images"
        return (
            f"labelled '{given}' but the model says '{pred['label']}' at {pred['probability']:.2f} "
            f"(confident above {pred['threshold']:.2f}); {neighbours}; it is a typical '{pred['label']}' "
            f"(p={dens['predicted_pvalue']:.2f}) and {farther}"
            + (f"; {_pool_phrase(record)}" if _pool_phrase(record) else "")
        )
    if cause == "augment":
        text = _transform_phrase(record) + "; the transformed image is a typical " + f"'{record['target']}'"
        if record.get("null_rate") is not None:
            text += f" (the same search turns {record['null_rate']:.0%} of clean training images into another class)"
        return text + f"; untransformed, {neighbours}"
    if cause == "imbalance":
        imb = record["imbalance"]
        share = f"{imb['train_share']:.1%} of the training data (fair share {imb['fair_share']:.0%})" if imb["train_share"] is not None else "a class"
        return (
            f"'{given}' is {share} and the model predicts it for {imb['recall']:.0%} of pool images labelled "
            f"'{given}' (other classes {imb['recall_others']:.0%}); this one is pushed into '{pred['label']}' "
            f"at {pred['probability']:.2f}"
        )
    if dens["distance"] is None:
        far = f"there are no training images of '{dens['class']}'"
    else:
        far = (f"farther from the '{dens['class']}' training images than {dens['percentile']:.1f}% of them "
               "are from each other")
    if cause == "rare":
        text = f"unlike the training data: {far}"
        if record.get("transform") is not None and record.get("family") not in (None, "none"):
            text += f"; no transform restores it: the best found, {_transform_phrase(record)}, fails because {_unconvincing(record, alpha)}"
        elif "restores" in record:
            text += "; no transform restores it"
        pool = _pool_phrase(record)
        return text + f"; {neighbours}" + (f"; {pool}" if pool else "")
    reasons = [f"model says '{pred['label']}' at {pred['probability']:.2f}", neighbours]
    if dens["pvalue"] is not None:
        reasons.append(f"typicality for '{dens['class']}' p={dens['pvalue']:.2f}")
    phrase = _transform_phrase(record)
    if phrase:
        reasons.append(f"best transform: {phrase}" + ("" if record.get("restores") else f", which fails because {_unconvincing(record, alpha)}"))
    return "no test is convincing: " + "; ".join(reasons)


def suggest_causes(
    labels,
    pred_probs,
    *,
    embeddings,
    train_embeddings=None,
    train_labels=None,
    transform_evidence: TransformEvidence | None = None,
    label_contrast: ContrastEvidence | None = None,
    candidates=None,
    density: ClassDensity | None = None,
    thresholds=None,
    train_ids=None,
    class_names=None,
    k: int = DEFAULT_K,
    alpha: float = DEFAULT_ALPHA,
    metric: str = "cosine",
) -> CauseSuggestions:
    """One cause per candidate (``mislabel``, ``augment``, ``imbalance``, ``rare`` or ``unclear``).

    The four tests of the module docstring are tried in :data:`RULE_ORDER`; the first that
    holds is the suggestion, and its strength is the confidence:

    * mislabel: ``(1 - p_given) * min(1, p_typ(j) / alpha) * share of neighbours labelled j``;
    * augment: ``p_after * min(1, p_typ(after) / alpha) * (1 - null_rate)``;
    * imbalance: ``(1 - train_share / fair_share) * (1 - p_given)``;
    * rare: ``1 - min(1, p_typ / alpha)`` (times the same for the predicted class when
      misclassified);
    * unclear: ``1 - `` the largest of those strengths.

    Pool-level statistics (confident thresholds, class recall, the pool's neighbour votes)
    come from all N rows; evidence is computed for the candidate rows only.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        Given labels of the pool; ``-1`` = unknown.
    pred_probs : np.ndarray, shape (N, K)
    embeddings : array-like, shape (N, D)
        Pool embeddings: the candidates' rows, and the labelled rows for the pool's own
        neighbour votes, read a block of rows at a time (a float16 memory map is fine).
    train_embeddings : np.ndarray, shape (T, D), optional
    train_labels : np.ndarray, shape (T,), int, optional
        The training set the density, neighbours and shares come from; required unless
        ``density`` is given (then the density's own labels give the training shares).
    transform_evidence : TransformEvidence, optional
        From :func:`models.transform_search.search_transforms` for the candidates, in the
        order of ``candidates``. Without it ``augment`` is never suggested.
    label_contrast : ContrastEvidence, optional
        Of all N rows (:func:`~hardcase.miner.causes.label_issues.contrast_evidence_from_parts`
        and :meth:`ContrastEvidence.for_pool`): the evidence, calibrated on the training
        examples and on the pool's own, that each row belongs to its most probable other class
        ``j`` rather than to its label. With it the mislabel test also asks ``w > 1/2`` (the
        pool's own contrast for a class under-represented in training), and ``w`` weighs the
        confidence: an unusual style shared by the pool's other examples of the class (other
        writers, another camera) is then not taken for a wrong label.
    candidates : np.ndarray, shape (M,), int, optional
        Pool rows to explain; default all N rows, in order.
    density : ClassDensity, optional
        Precomputed :func:`fit_class_density` of the training embeddings.
    thresholds : np.ndarray, shape (K,), optional
        Per-class confident thresholds; default
        ``confident_thresholds(labels, pred_probs, unknown_labels="as_predicted")`` of the pool
        (:func:`hardcase.miner.scores.confident_thresholds`).
    train_ids : np.ndarray, shape (T,), int, optional
        Ids reported for training neighbours (e.g. source indices); default ``0 .. T-1``.
    class_names : sequence of str, optional
        Names used in the evidence; default ``"0" .. "K-1"``.
    k : int
        Neighbours.
    alpha : float
        Significance level of the typicality and imbalance tests.
    metric : {"cosine", "euclidean"}

    Returns
    -------
    CauseSuggestions
    """
    pred_probs = check_pred_probs(pred_probs)
    n, n_classes = pred_probs.shape
    labels = check_labels(labels, n=n, n_classes=n_classes)
    alpha = _check_alpha(alpha)
    metric = _check_metric(metric)
    k = check_positive_int(k, name="k")
    cand = np.arange(n, dtype=np.int64) if candidates is None else _check_candidates(candidates, n)
    emb_all = check_row_array(embeddings, name="embeddings", n=n, n_name="pred_probs")
    cand_emb = check_embeddings(np.asarray(emb_all[cand]), name="embeddings (candidate rows)")
    train_lab = None
    if density is None:
        if train_embeddings is None or train_labels is None:
            raise ValueError("pass train_embeddings and train_labels (or a fitted density)")
        t_emb = check_embeddings(train_embeddings, name="train_embeddings")
        _check_same_width(cand_emb, t_emb, "embeddings", "train_embeddings")
        train_lab, _ = _check_train_labels(train_labels, n=t_emb.shape[0], n_classes=n_classes)
        density = _compute_class_density(t_emb, train_lab, n_classes, k, metric)
    else:
        density = _check_density(density, cand_emb.shape[1], "embeddings")
        if density.n_classes != n_classes:
            raise ValueError(f"density has K={density.n_classes} classes but pred_probs has K={n_classes} columns")
        if train_labels is not None:
            train_lab, _ = _check_train_labels(train_labels, n=density.embeddings.shape[0], n_classes=n_classes)
        else:
            train_lab = density.labels
    n_train = density.embeddings.shape[0]
    if train_ids is None:
        ids = np.arange(n_train, dtype=np.int64)
    else:
        ids = check_int_array_1d(train_ids, name="train_ids", n=n_train, n_name="train_embeddings")
    if thresholds is None:
        thr = _compute_confident_thresholds(labels, pred_probs, "as_predicted")
    else:
        thr = check_thresholds(thresholds, n_classes=n_classes)
    evidence = _check_transform_evidence(transform_evidence, len(cand))
    names = _as_class_names(class_names, n_classes)
    contrast = None
    if label_contrast is not None:
        if not isinstance(label_contrast, ContrastEvidence):
            raise TypeError(f"label_contrast must be a ContrastEvidence, got {type(label_contrast).__name__}")
        if len(label_contrast) != n:
            raise ValueError(f"label_contrast has {len(label_contrast)} rows but pred_probs has N={n} rows")
        for name in ("weight", "pool_weight"):
            check_values_1d(getattr(label_contrast, name), name=f"label_contrast.{name}", n=n, n_name="pred_probs",
                            bounds=(0.0, 1.0))
        contrast = label_contrast.take(cand)
    imbalance = _compute_imbalance(labels, pred_probs, train_lab, alpha)
    return _compute_suggestions(labels, pred_probs, cand, cand_emb, emb_all, density, evidence, imbalance, thr, names,
                                ids, alpha, k, contrast)


def _check_candidates(candidates, n: int) -> np.ndarray:
    arr = np.asarray(candidates)
    if arr.ndim != 1:
        raise ValueError(f"candidates must be 1-D (M,), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"candidates must be an integer array, got dtype {arr.dtype}")
    unique = check_indices(arr, name="candidates", n=n, n_name="pred_probs")
    if unique.size != arr.size:
        raise ValueError("candidates repeats a row")
    return arr.astype(np.int64)
