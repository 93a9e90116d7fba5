"""Ground-truth and property tests for miner.scores (pure numpy, fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hardcase.miner import scores as S

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LABEL_AWARE = ("self_confidence", "normalized_margin", "loss", "label_quality_score")
UNIT_RANGE = (
    "confidence",
    "margin",
    "entropy",
    "self_confidence",
    "normalized_margin",
    "label_quality_score",
    "hardness_score",
)


# ----------------------------------------------------------------------- strategies


@st.composite
def pred_probs_st(draw, max_n: int = 25, max_k: int = 7):
    """Probability matrices: softmaxed logits of wide range, plus exact one-hot,
    uniform, tied and zero-containing rows."""
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(2, max_k))
    logits = draw(hnp.arrays(np.float64, (n, k), elements=st.floats(-30, 30, allow_nan=False)))
    p = S.softmax(logits)
    specials = draw(st.lists(st.sampled_from(["onehot", "uniform", "tie", "zeros"]), max_size=n))
    for row, kind in enumerate(specials):
        if kind == "onehot":
            p[row] = np.eye(k)[row % k]
        elif kind == "uniform":
            p[row] = 1.0 / k
        elif kind == "tie":
            p[row] = 0.0
            p[row, :2] = 0.5
        else:
            w = np.arange(k, dtype=float) % 2  # zeros in every other column
            p[row] = w / w.sum()
    return p


@st.composite
def labeled_st(draw, allow_unknown: bool = True, **kw):
    p = draw(pred_probs_st(**kw))
    n, k = p.shape
    low = -1 if allow_unknown else 0
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(low, k - 1)))
    return p, labels


def assert_scores_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, val in a.items():
        np.testing.assert_allclose(val, b[key], rtol=1e-9, atol=1e-12, err_msg=key)


# --------------------------------------------------------------- properties: shapes


@SETTINGS
@given(labeled_st())
def test_compute_scores_shapes_dtypes_ranges(data):
    p, labels = data
    n, k = p.shape
    out = S.compute_scores(p, labels=labels)
    assert tuple(out) == S.SCORE_FIELDS
    for key, arr in out.items():
        assert arr.shape == (n,), key
    assert out["predicted_label"].dtype == np.int64
    assert ((out["predicted_label"] >= 0) & (out["predicted_label"] < k)).all()
    np.testing.assert_array_equal(p[np.arange(n), out["predicted_label"]], p.max(axis=1))
    known = labels >= 0
    for key in UNIT_RANGE:
        arr = out[key]
        if key in LABEL_AWARE:
            assert np.isnan(arr[~known]).all(), key
            arr = arr[known]
        assert np.isfinite(arr).all(), key
        assert ((arr >= 0) & (arr <= 1)).all(), key
    loss = out["loss"]
    assert np.isnan(loss[~known]).all()
    assert ((loss[known] >= 0) & (loss[known] <= -math.log(S.MIN_PROB) + 1e-9)).all()
    assert np.isfinite(out["hardness_score"]).all()


@SETTINGS
@given(pred_probs_st())
def test_compute_scores_without_labels(p):
    out = S.compute_scores(p)
    for key in LABEL_AWARE:
        assert np.isnan(out[key]).all(), key
    np.testing.assert_allclose(out["hardness_score"], out["confidence"])


@SETTINGS
@given(labeled_st())
def test_compute_scores_matches_single_functions(data):
    p, labels = data
    out = S.compute_scores(p, labels=labels)
    np.testing.assert_allclose(out["confidence"], S.confidence_score(p))
    np.testing.assert_allclose(out["margin"], S.margin_score(p))
    np.testing.assert_allclose(out["entropy"], S.normalized_entropy(p))
    np.testing.assert_allclose(out["self_confidence"], S.self_confidence_score(labels, p))
    np.testing.assert_allclose(out["normalized_margin"], S.normalized_margin_score(labels, p))
    np.testing.assert_allclose(out["loss"], S.cross_entropy_loss(labels, p))
    np.testing.assert_allclose(out["label_quality_score"], S.label_quality_score(labels, p))
    np.testing.assert_allclose(out["hardness_score"], S.hardness_score(p, labels=labels))


@SETTINGS
@given(labeled_st(), st.randoms(use_true_random=False))
def test_row_order_invariance(data, rnd):
    """Permuting the rows permutes every output (thresholds come from the whole pool)."""
    p, labels = data
    perm = np.arange(p.shape[0])
    rnd.shuffle(perm)
    base = S.compute_scores(p, labels=labels)
    permuted = S.compute_scores(p[perm], labels=labels[perm])
    assert_scores_equal(permuted, {key: val[perm] for key, val in base.items()})
    np.testing.assert_allclose(
        S.confident_thresholds(labels[perm], p[perm]), S.confident_thresholds(labels, p)
    )


def test_sums_within_the_probability_tolerance_are_accepted():
    # 1000 self-confidences of 1.0005 each: rows summing to 1 within 1e-3 allow such entries
    np.testing.assert_allclose(S.confident_thresholds_from_sums([1000, 1], [1000.5, 0.5]), [1.0005, 0.5])


@SETTINGS
@given(labeled_st(max_n=40), st.integers(1, 40))
def test_chunked_thresholds_equal_whole_pool(data, chunk):
    """Per-class sums added over chunks give the whole pool's thresholds (mining reads the
    pool's pred_probs back chunk by chunk)."""
    p, labels = data
    counts, sums = np.zeros(p.shape[1], np.int64), np.zeros(p.shape[1])
    for start in range(0, p.shape[0], chunk):
        c, t = S.class_confidence_sums(labels[start : start + chunk], p[start : start + chunk])
        counts += c
        sums += t
    np.testing.assert_array_equal(counts, np.bincount(labels[labels >= 0], minlength=p.shape[1]))
    np.testing.assert_allclose(
        S.confident_thresholds_from_sums(counts, sums), S.confident_thresholds(labels, p), rtol=1e-12
    )


@SETTINGS
@given(labeled_st())
def test_score_relations(data):
    p, labels = data
    out = S.compute_scores(p, labels=labels)
    known = labels >= 0
    eps = 1e-12
    assert (out["self_confidence"][known] <= out["confidence"][known] + eps).all()
    assert (out["margin"] <= out["confidence"] + eps).all()
    np.testing.assert_allclose(
        out["loss"][known], -np.log(np.maximum(out["self_confidence"][known], S.MIN_PROB))
    )
    # the model agrees with the label <=> normalized margin >= 0.5
    p_given = p[np.flatnonzero(known), labels[known]]
    p_max = p[known].max(axis=1)
    nm = out["normalized_margin"][known]
    assert (nm[p_given >= p_max] >= 0.5 - eps).all()
    assert (nm[p_given < p_max - 1e-9] < 0.5).all()
    # hardness: the self-confidence where the label is known, the max-probability elsewhere
    np.testing.assert_allclose(out["hardness_score"][known], out["self_confidence"][known])
    np.testing.assert_allclose(out["hardness_score"][~known], out["confidence"][~known])


@SETTINGS
@given(pred_probs_st())
def test_hardness_label_agreeing_with_model_changes_nothing(p):
    predicted = p.argmax(axis=1)
    np.testing.assert_allclose(S.hardness_score(p, labels=predicted), S.hardness_score(p))
    # a label the model disagrees with makes the example harder than it is without a label
    k = p.shape[1]
    other = (predicted + 1) % k
    disagree = p[np.arange(len(p)), other] < p.max(axis=1) - 1e-9
    assume(disagree.any())
    assert (S.hardness_score(p, labels=other)[disagree] < S.hardness_score(p)[disagree]).all()
    assert (S.hardness_score(p) >= 1 / k - 1e-12).all()


@SETTINGS
@given(labeled_st(allow_unknown=False))
def test_confident_learning_ranks_labels_by_adjusted_probability(data):
    """A flipped label scores lower than its clean twin.

    Same row, same pool thresholds: the clean label is the class the adjusted
    probabilities prefer; any other (flipped) label gets a strictly lower score.
    """
    p, labels = data
    thresholds = S.confident_thresholds(labels, p)
    adjusted = p - thresholds
    row = 0
    clean = int(adjusted[row].argmax())
    gap = np.sort(adjusted[row])[-1] - np.sort(adjusted[row])[-2]
    assume(gap > 1e-9)
    for flipped in range(p.shape[1]):
        if flipped == clean:
            continue
        twin = np.array([clean, flipped])
        scores = S.confident_learning_score(twin, p[[row, row]], thresholds=thresholds)
        assert scores[1] < scores[0]
        assert scores[1] < 0.5 <= scores[0]


@SETTINGS
@given(labeled_st(allow_unknown=False, max_n=40, max_k=5))
def test_confident_learning_matches_cleanlab(data):
    rank = pytest.importorskip("cleanlab.rank")
    p, labels = data
    k = p.shape[1]
    labels = labels.copy()
    assume(len(labels) >= k)
    labels[:k] = np.arange(k)  # every class labeled at least once (cleanlab's fallback differs)
    ours = S.confident_learning_score(labels, p)
    theirs = rank.get_label_quality_scores(
        labels, p, method="normalized_margin", adjust_pred_probs=True
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    np.testing.assert_allclose(
        S.normalized_margin_score(labels, p), rank.get_normalized_margin_for_each_label(labels, p)
    )
    np.testing.assert_allclose(
        S.self_confidence_score(labels, p), rank.get_self_confidence_for_each_label(labels, p)
    )
    count = pytest.importorskip("cleanlab.count")
    np.testing.assert_allclose(
        S.confident_thresholds(labels, p), count.get_confident_thresholds(labels, p)
    )


@SETTINGS
@given(pred_probs_st())
def test_entropy_matches_cleanlab(p):
    lq = pytest.importorskip("cleanlab.internal.label_quality_utils")
    np.testing.assert_allclose(S.normalized_entropy(p), lq.get_normalized_entropy(p), atol=1e-12)


@SETTINGS
@given(labeled_st())
def test_float32_and_list_inputs(data):
    p, labels = data
    p32 = p.astype(np.float32)
    assume(np.all(np.abs(p32.sum(axis=1, dtype=np.float64) - 1) <= 1e-3))
    out = S.compute_scores(p32, labels=labels)
    ref = S.compute_scores(p32.astype(np.float64), labels=labels)
    assert_scores_equal(out, ref)
    np.testing.assert_allclose(S.confidence_score(p.tolist()), S.confidence_score(p))


# --------------------------------------------------------------- known values


P3 = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.3, 0.6],
        [1 / 3, 1 / 3, 1 / 3],
        [0.5, 0.5, 0.0],
        [0.0, 1.0, 0.0],
    ]
)
L3 = np.array([0, 1, 2, -1, 1])


def test_known_label_free_values():
    np.testing.assert_allclose(S.confidence_score(P3), [0.7, 0.6, 1 / 3, 0.5, 1.0])
    np.testing.assert_allclose(S.margin_score(P3), [0.5, 0.3, 0.0, 0.0, 1.0], atol=1e-15)

    def h(*q):
        return -sum(x * math.log(x) for x in q if x > 0) / math.log(3)

    np.testing.assert_allclose(
        S.normalized_entropy(P3), [h(0.7, 0.2, 0.1), h(0.1, 0.3, 0.6), 1.0, h(0.5, 0.5), 0.0]
    )


def test_known_label_aware_values():
    nan = np.nan
    np.testing.assert_allclose(S.self_confidence_score(L3, P3), [0.7, 0.3, 1 / 3, nan, 1.0])
    np.testing.assert_allclose(
        S.normalized_margin_score(L3, P3),
        [(0.7 - 0.2 + 1) / 2, (0.3 - 0.6 + 1) / 2, 0.5, nan, 1.0],
    )
    np.testing.assert_allclose(
        S.cross_entropy_loss(L3, P3),
        [-math.log(0.7), -math.log(0.3), math.log(3), nan, 0.0],
        atol=1e-15,
    )
    # loss is clipped like Keras: p=0 gives -log(1e-7)
    assert S.cross_entropy_loss([2], [[0.5, 0.5, 0.0]])[0] == pytest.approx(-math.log(1e-7))
    np.testing.assert_allclose(S.hardness_score(P3, labels=L3), [0.7, 0.3, 1 / 3, 0.5, 1.0])
    np.testing.assert_allclose(S.hardness_score(P3), [0.7, 0.6, 1 / 3, 0.5, 1.0])


def test_known_confident_thresholds_and_fallback():
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.3, 0.7, 0.0], [0.2, 0.2, 0.6]])
    labels = np.array([0, 0, 1, -1])
    t = S.confident_thresholds(labels, p)
    # class 0: mean(0.8, 0.6); class 1: 0.7; class 2 unlabeled: mean of the others
    np.testing.assert_allclose(t, [0.7, 0.7, 0.7])
    t = S.confident_thresholds(np.array([0, 0, 1, 1]), p)
    np.testing.assert_allclose(t, [0.7, 0.45, 0.575])
    np.testing.assert_allclose(S.confident_thresholds(np.full(4, -1), p), [1 / 3] * 3)


def test_known_confident_thresholds_with_unknown_labels_as_predicted():
    p = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.3, 0.7, 0.0], [0.2, 0.2, 0.6]])
    # the unlabeled row 3 counts for its predicted class 2: 0.6, not the mean of the others
    labels = np.array([0, 0, 1, -1])
    np.testing.assert_allclose(S.confident_thresholds(labels, p, unknown_labels="as_predicted"), [0.7, 0.7, 0.6])
    np.testing.assert_allclose(S.confident_thresholds(labels, p, unknown_labels="ignore"), [0.7, 0.7, 0.7])
    # an unlabeled pool still gets thresholds from its predictions
    np.testing.assert_allclose(
        S.confident_thresholds(np.full(4, -1), p, unknown_labels="as_predicted"), [0.7, 0.7, 0.6]
    )
    # a given label wins over the prediction: row 3 labeled 0 adds 0.2 to class 0
    np.testing.assert_allclose(
        S.confident_thresholds(np.array([0, 0, 1, 0]), p, unknown_labels="as_predicted"), [1.6 / 3, 0.7, 0.6167],
        atol=1e-4,
    )
    # nobody labeled or predicted class 2: the mean of the others
    np.testing.assert_allclose(
        S.confident_thresholds(np.full(3, -1), p[:3], unknown_labels="as_predicted"), [0.7, 0.7, 0.7]
    )
    np.testing.assert_allclose(
        S.confident_thresholds([], np.empty((0, 3)), unknown_labels="as_predicted"), [1 / 3] * 3
    )


def test_only_thresholds_of_predictions_are_capped_at_one():
    # rows may sum to 1 within the tolerance, so a self-confidence may exceed 1
    p = np.array([[1.0009, 0.0], [0.4, 0.6]])
    labels = np.array([0, 1])
    np.testing.assert_allclose(S.confident_thresholds(labels, p), [1.0009, 0.6])  # as cleanlab
    np.testing.assert_allclose(S.confident_thresholds(labels, p, unknown_labels="as_predicted"), [1.0, 0.6])


@SETTINGS
@given(labeled_st(max_n=40))
def test_unknown_labels_as_predicted_is_ignore_on_the_predictions(data):
    """'as_predicted' is 'ignore' on labels where every unknown one is the prediction (capped at 1)."""
    p, labels = data
    filled = np.where(labels >= 0, labels, p.argmax(axis=1))
    np.testing.assert_array_equal(
        S.confident_thresholds(labels, p, unknown_labels="as_predicted"),
        np.minimum(S.confident_thresholds(filled, p, unknown_labels="ignore"), 1.0),
    )
    # 'ignore' does not see the unknown rows at all
    known = labels >= 0
    np.testing.assert_array_equal(S.confident_thresholds(labels, p), S.confident_thresholds(labels[known], p[known]))


@SETTINGS
@given(labeled_st(max_n=40, max_k=5))
def test_ignored_unknown_labels_match_cleanlab_on_the_labeled_rows(data):
    count = pytest.importorskip("cleanlab.count")
    p, labels = data
    k = p.shape[1]
    labels = np.concatenate([np.arange(k), labels])  # every class labeled at least once
    p = np.concatenate([p[np.arange(k) % len(p)], p])
    known = labels >= 0
    np.testing.assert_allclose(
        S.confident_thresholds(labels, p, unknown_labels="ignore"),
        count.get_confident_thresholds(labels[known], p[known]),
        rtol=1e-12,
    )


def test_constant_thresholds_make_confident_learning_the_normalized_margin():
    labels = np.array([0, 2, 1, 0, 1])
    for value in (0.0, 0.3, 1.0):
        np.testing.assert_allclose(
            S.confident_learning_score(labels, P3, thresholds=np.full(3, value)),
            S.normalized_margin_score(labels, P3),
            atol=1e-15,
        )


def test_confident_learning_adjusts_for_overconfident_class():
    # the model puts 0.6 on class 0 for everything it labels 0, and 0.45 on class 1
    # for the examples labeled 1: a 0.5/0.5 row is more likely class 1 than class 0
    p = np.array([[0.6, 0.4]] * 4 + [[0.45, 0.55]] * 4 + [[0.5, 0.5]] * 2)
    labels = np.array([0] * 4 + [1] * 4 + [0, 1])
    t = S.confident_thresholds(labels[:8], p[:8])
    np.testing.assert_allclose(t, [0.6, 0.55])
    lqs = S.confident_learning_score(labels, p, thresholds=t)
    assert lqs[9] > 0.5 > lqs[8]  # labeled 1: fine; labeled 0: suspicious
    # without the adjustment both would be exactly 0.5
    np.testing.assert_allclose(S.normalized_margin_score(labels[8:], p[8:]), [0.5, 0.5])


def test_flipped_labels_rank_lowest_in_a_pool():
    """A realistic pool: confident correct labels, a few flipped; flips score lowest."""
    rng = np.random.default_rng(3)
    n, k = 600, 6
    truth = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 4.0
    p = S.softmax(logits)
    labels = truth.copy()
    flipped = rng.choice(n, 12, replace=False)
    labels[flipped] = (truth[flipped] + rng.integers(1, k, 12)) % k
    for score in (S.label_quality_score, S.confident_learning_score):
        lqs = score(labels, p)
        assert set(np.argsort(lqs)[:12]) == set(flipped)
        clean_twin = score(truth, p)
        assert (lqs[flipped] < clean_twin[flipped]).all()
    # without embeddings the exported label quality is the self-confidence
    np.testing.assert_allclose(S.label_quality_score(labels, p), S.self_confidence_score(labels, p))


# --------------------------------------------------------------------- logits


@SETTINGS
@given(pred_probs_st())
def test_probabilities_are_not_logits(p):
    assert not S.detect_logits(p)
    assert not S.detect_logits(p.astype(np.float32))


@SETTINGS
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=8),
        elements=st.floats(-30, 30, allow_nan=False),
    )
)
def test_softmax_properties(z):
    p = S.softmax(z)
    assert p.shape == z.shape
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(S.softmax(z + 7.5), p, atol=1e-12)  # shift-invariant
    assert not S.detect_logits(p)
    top = np.sort(z, axis=1)
    clear = top[:, -1] - top[:, -2] > 1e-9
    np.testing.assert_array_equal(p.argmax(axis=1)[clear], z.argmax(axis=1)[clear])
    # logits with a negative entry, or not summing to 1, are detected
    if (z < 0).any() or (np.abs(z.sum(axis=1) - 1) > 1e-3).any():
        assert S.detect_logits(z)


def test_detect_logits_known():
    assert S.detect_logits([[2.0, -1.0, 0.5]])
    assert S.detect_logits([[0.3, 0.3]])  # sums to 0.6
    assert S.detect_logits([[3.0, 1.0]])
    assert not S.detect_logits([[0.25, 0.75], [1.0, 0.0]])
    assert not S.detect_logits(np.empty((0, 3)))
    assert S.detect_logits(np.array([[0.5, 0.5], [0.2, 0.2]], dtype=np.float32))
    np.testing.assert_allclose(S.softmax([[0.0, math.log(3)]]), [[0.25, 0.75]])
    big = S.softmax(np.array([[1000.0, 0.0], [-1000.0, 0.0]], dtype=np.float32))
    assert big.dtype == np.float32 and np.isfinite(big).all()
    np.testing.assert_allclose(big, [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="outputs row 1 contains NaN"):
        S.detect_logits([[0.5, 0.5], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="outputs row 0 contains inf"):
        S.softmax([[np.inf, 1.0]])


# ----------------------------------------------------------------- validation


def _nan_row_17():
    p = np.full((20, 10), 0.1)
    p[17, 4] = np.nan
    return p


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: S.confidence_score(_nan_row_17()), ValueError, r"pred_probs row 17 contains NaN"),
        (
            lambda: S.margin_score([[0.5, 0.5], [0.2, np.inf]]),
            ValueError,
            r"pred_probs row 1 contains inf",
        ),
        (
            lambda: S.self_confidence_score([0, 1, 2, 12], np.full((4, 10), 0.1)),
            ValueError,
            r"labels has value 12 at index 3 but pred_probs has K=10 columns",
        ),
        (
            lambda: S.self_confidence_score([0, -2], np.full((2, 2), 0.5)),
            ValueError,
            r"labels has value -2 at index 1",
        ),
        (
            lambda: S.normalized_margin_score([0, 1, 1], np.full((2, 2), 0.5)),
            ValueError,
            r"labels has length 3 but pred_probs has N=2 rows",
        ),
        (
            lambda: S.cross_entropy_loss(np.array([0.0, 1.0]), np.full((2, 2), 0.5)),
            TypeError,
            r"labels must be an integer array, got shape \(2,\) and dtype float64",
        ),
        (
            lambda: S.label_quality_score(np.zeros((2, 1), int), np.full((2, 2), 0.5)),
            ValueError,
            r"labels must be 1-D",
        ),
        (
            lambda: S.confidence_score([0.5, 0.5]),
            ValueError,
            r"pred_probs must be 2-D with shape \(N, K\), got shape \(2,\)",
        ),
        (lambda: S.confidence_score([[1.0], [1.0]]), ValueError, r"at least K=2 columns"),
        (lambda: S.confidence_score([["a", "b"]]), TypeError, r"pred_probs must be a real-valued"),
        (lambda: S.confidence_score([[0.5, 0.5], [0.5]]), TypeError, r"pred_probs must be"),
        (
            lambda: S.margin_score([[0.5, 0.5], [1.2, -0.2]]),
            ValueError,
            r"pred_probs row 1 has negative value -0.2 in column 1.*softmax",
        ),
        (
            lambda: S.compute_scores([[0.5, 0.5], [2.0, 1.0]]),
            ValueError,
            r"pred_probs row 1 sums to 3, not 1.*softmax",
        ),
        (
            lambda: S.confident_learning_score([0, 1], np.full((2, 3), 1 / 3), thresholds=[0.5, 0.5]),
            ValueError,
            r"thresholds must have shape \(K,\) = \(3,\).*got shape \(2,\)",
        ),
        (
            lambda: S.confident_learning_score([0, 1], np.full((2, 2), 0.5), thresholds=[0.5, np.nan]),
            ValueError,
            r"thresholds has value nan at class 1",
        ),
        (
            lambda: S.compute_scores(np.full((2, 2), 0.5), labels=[0, 5]),
            ValueError,
            r"labels has value 5 at index 1 but pred_probs has K=2 columns",
        ),
        (
            lambda: S.hardness_score(np.full((2, 2), 0.5), labels=[0]),
            ValueError,
            r"labels has length 1 but pred_probs has N=2 rows",
        ),
        (lambda: S.cross_entropy_loss([0], [[0.5, 0.5]], min_prob=0.0), ValueError, r"min_prob"),
        (lambda: S.confident_thresholds_from_sums([1, -1], [0.5, 0.0]), ValueError, r"counts has -1 at class 1"),
        (lambda: S.confident_thresholds_from_sums([1, 2], [0.5]), ValueError, r"sums must have the shape"),
        (lambda: S.confident_thresholds_from_sums([1, 2], [0.5, 2.5]), ValueError, r"sums has 2.5 at class 1"),
        # accepted probabilities may exceed 1 by up to PROB_SUM_ATOL; more than that is an error
        (lambda: S.confident_thresholds_from_sums([1, 1000], [0.5, 1000 * (1 + 2e-3)]), ValueError, r"sums has"),
        (lambda: S.confident_thresholds_from_sums([1.0, 2.0], [0.5, 1]), TypeError, r"counts must be an integer"),
        (lambda: S.softmax([1.0, 2.0]), ValueError, r"outputs must be 2-D"),
        (
            lambda: S.confident_thresholds([0], [[0.5, 0.5]], unknown_labels="predicted"),
            ValueError,
            r"unknown_labels must be one of 'ignore', 'as_predicted', got 'predicted'",
        ),
        (
            lambda: S.confident_thresholds([0, 2], np.full((2, 2), 0.5), unknown_labels="as_predicted"),
            ValueError,
            r"labels has value 2 at index 1 but pred_probs has K=2 columns",
        ),
    ],
)
def test_validation_errors_name_the_bad_thing(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_empty_pool():
    out = S.compute_scores(np.empty((0, 3)), labels=np.empty(0, dtype=int))
    assert all(v.shape == (0,) for v in out.values())
    np.testing.assert_allclose(S.confident_thresholds([], np.empty((0, 3))), [1 / 3] * 3)


def test_label_score_fields_are_exactly_the_scores_an_unknown_label_leaves_empty():
    probs = np.random.default_rng(0).dirichlet(np.ones(4), 6)
    unlabelled = S.compute_scores(probs, labels=np.full(6, -1))
    empty = {name for name, values in unlabelled.items() if np.isnan(np.asarray(values, dtype=float)).all()}
    assert empty == set(S.LABEL_SCORE_FIELDS)
    labelled = S.compute_scores(probs, labels=np.arange(6) % 4)
    assert not any(np.isnan(np.asarray(values, dtype=float)).any() for values in labelled.values())
