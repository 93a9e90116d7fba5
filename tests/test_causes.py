"""Cause suggestion: neighbours, typicality, imbalance, label issues and the decision, on
constructed ground truth; then the whole workflow on a mined run and the benchmark at small size."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hardcase.miner import causes, vocabulary
from hardcase.miner.causes import (
    CauseSuggestions,
    TransformEvidence,
    class_imbalance,
    class_typicality,
    describe_transform,
    fit_class_density,
    nearest_neighbours,
    neighbour_label_quality_score,
    neighbour_votes,
    rank_label_issues,
    suggest_causes,
)

K = 4
DIM = 8


def clusters(rng, per_class=60, spread=0.15, n_classes=K):
    """Embeddings around one well-separated direction per class (ReLU-like: non-negative)."""
    centres = np.eye(DIM)[:n_classes] * 4.0 + 0.5
    labels = np.repeat(np.arange(n_classes), per_class)
    emb = centres[labels] + spread * rng.standard_normal((len(labels), DIM))
    return np.abs(emb).astype(np.float32), labels, centres


def one_hot_probs(pred, confidence, n_classes=K):
    probs = np.full((len(pred), n_classes), (1 - confidence) / (n_classes - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


# ----------------------------------------------------------------------------- neighbours


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_neighbours_match_brute_force_in_small_blocks(rng, metric):
    q = rng.standard_normal((37, 5)).astype(np.float32)
    r = rng.standard_normal((53, 5)).astype(np.float32)
    if metric == "cosine":
        qn, rn = q / np.linalg.norm(q, axis=1, keepdims=True), r / np.linalg.norm(r, axis=1, keepdims=True)
        full = 1 - qn @ rn.T
    else:
        full = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1))
    expected = np.sort(full, axis=1)[:, :4]
    got = nearest_neighbours(q, r, k=4, metric=metric)
    np.testing.assert_allclose(got.distances, expected, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(full, got.indices, 1), expected, atol=1e-5)
    # tiny blocks force the running top-k merge across many reference blocks
    knn = causes.neighbours
    d, i = knn._compute_knn(knn._prepare(q, metric), knn._prepare(r, metric), 4, metric, block_elements=20)
    np.testing.assert_allclose(d, expected, atol=1e-5)


def test_leave_one_out_neighbours_skip_the_query_itself(rng):
    x = rng.standard_normal((30, 3)).astype(np.float32)
    got = nearest_neighbours(x, x, k=3, metric="euclidean", exclude_self=True)
    assert not np.any(got.indices == np.arange(30)[:, None])
    assert np.all(got.distances > 0)


def test_neighbour_votes_ignore_unknown_labels():
    votes = neighbour_votes(np.array([[0, 1, 2], [2, 2, -1]]), np.array([1, 1, 0]), n_classes=2)
    np.testing.assert_allclose(votes, [[1 / 3, 2 / 3], [1.0, 0.0]])


# ----------------------------------------------------------------------------- typicality


def test_typicality_pvalues_are_conformal_and_far_points_are_atypical(rng):
    emb, labels, centres = clusters(rng)
    density = fit_class_density(emb, labels, n_classes=K, k=5)
    assert density.counts.tolist() == [60] * K
    fresh, fresh_labels, _ = clusters(np.random.default_rng(7))
    typ = class_typicality(fresh, fresh_labels, density=density)
    # fresh draws from the same distribution: p-values roughly uniform, few below alpha
    assert 0.3 < np.median(typ.pvalue) < 0.7
    assert np.mean(typ.pvalue < 0.05) < 0.15
    far = np.abs(centres[:1] * 3 + 5.0 * np.eye(DIM)[5]).astype(np.float32)
    typ_far = class_typicality(far, np.array([0]), density=density)
    assert typ_far.pvalue[0] == pytest.approx(1 / 61)
    assert typ_far.distance[0] > 3
    assert np.all(labels[typ_far.neighbours[0]] == 0)
    # -1 skips a row; a class without training examples is atypical of nothing
    empty = fit_class_density(emb[labels < 3], labels[labels < 3], n_classes=K, k=5)
    typ = class_typicality(emb[:2], np.array([-1, 3]), density=empty)
    assert np.isnan(typ.pvalue[0]) and typ.pvalue[1] == 0.0


# ----------------------------------------------------------------------------- imbalance


def test_imbalance_flags_the_under_represented_and_under_predicted_class(rng):
    train_labels = np.concatenate([np.repeat([0, 1, 3], 300), np.repeat(2, 20)])
    given = np.repeat(np.arange(K), 250)
    pred = given.copy()
    pushed = np.flatnonzero(given == 2)[:90]
    pred[pushed] = 3  # class 2 loses 36% of its pool examples to class 3
    noise = rng.choice(np.flatnonzero(given != 2), size=30, replace=False)
    pred[noise] = (given[noise] + 1) % K
    probs = one_hot_probs(pred, 0.9)
    imb = class_imbalance(given, probs, train_labels=train_labels)
    assert imb.imbalanced.tolist() == [False, False, True, False]
    assert imb.under_represented.tolist() == [False, False, True, False]
    assert imb.train_share[2] == pytest.approx(20 / 920)
    assert imb.recall[2] == pytest.approx(160 / 250)
    assert imb.pushed_into[2] == 3
    assert imb.predicted_vs_given[2] < 1 < imb.predicted_vs_given[3]
    # the same pool with a balanced training set: under-predicted, not imbalanced
    balanced = class_imbalance(given, probs, train_labels=np.repeat(np.arange(K), 300))
    assert balanced.under_predicted[2] and not balanced.imbalanced.any()
    # without training labels only under-prediction is tested
    assert class_imbalance(given, probs).imbalanced.tolist() == [False, False, True, False]


# ----------------------------------------------------------------------------- label issues


def test_label_issues_rank_typical_members_of_another_class_first(rng):
    train, train_labels, centres = clusters(rng)
    density = fit_class_density(train, train_labels, n_classes=K, k=5)
    pool, true, _ = clusters(np.random.default_rng(3), per_class=50)
    labels = true.copy()
    flipped = np.arange(0, 200, 20)  # 10 flips: clean images of class `true`, labelled otherwise
    labels[flipped] = (true[flipped] + 1) % K
    odd = np.arange(5, 200, 20)  # 10 odd images far from every class, misclassified by the model
    pool[odd] = np.abs(rng.standard_normal((10, DIM)) * 3).astype(np.float32)
    pred = true.copy()
    pred[odd] = (true[odd] + 2) % K
    probs = one_hot_probs(pred, 0.97)
    ranked = rank_label_issues(labels, probs, embeddings=pool, density=density)
    assert set(ranked[:10]) == set(flipped)
    score = neighbour_label_quality_score(labels, probs, embeddings=pool, density=density)
    assert score[flipped].max() < score[odd].min()
    labels_unknown = labels.copy()
    labels_unknown[0] = -1
    assert np.isnan(neighbour_label_quality_score(labels_unknown, probs, embeddings=pool, density=density)[0])
    assert 0 not in rank_label_issues(labels_unknown, probs, embeddings=pool, density=density)


# ----------------------------------------------------------------------------- the decision


def _evidence(m, *, restores=(), target=None, typicality=0.5):
    restores_mask = np.zeros(m, dtype=bool)
    restores_mask[list(restores)] = True
    return TransformEvidence(
        target=np.zeros(m, dtype=np.int64) if target is None else np.asarray(target),
        family=np.where(restores_mask, "rotate", "none"),
        transform=tuple({"rotate": -40.0, "perspective": 0.0, "direction": 0.0, "scale": 1.0} if r else
                        {"rotate": 0.0, "perspective": 0.0, "direction": 0.0, "scale": 1.0} for r in restores_mask),
        before=np.full(m, 0.05), after=np.where(restores_mask, 0.97, 0.1),
        predicted_after=np.zeros(m, dtype=np.int64),
        typicality=np.where(restores_mask, typicality, 0.0),
        stable=restores_mask, restores=restores_mask,
        smallest=tuple({"rotate": -30.0} if r else None for r in restores_mask),
        null_rate=0.1,
    )


def test_a_rare_candidate_says_which_restoration_test_its_best_transform_failed(rng):
    train, train_labels, _ = clusters(rng, per_class=80)
    pool, labels, _ = clusters(np.random.default_rng(5), per_class=100)
    probs = one_hot_probs(labels, 0.95)
    pool[0] = np.abs(rng.standard_normal(DIM) * 3) + 2.0  # far from every class
    probs[0] = one_hot_probs([1], 0.6)[0]
    cand = np.array([0])
    thresholds = np.full(K, 0.5)

    def text(**changes):
        fields = dict(target=np.array([labels[0]]), family=np.array(["rotate"]),
                      transform=({"rotate": -40.0},), before=np.array([0.05]), after=np.array([0.97]),
                      predicted_after=np.array([labels[0]]), typicality=np.array([0.3]), stable=np.array([True]),
                      restores=np.array([False]), smallest=(None,), null_rate=0.1, null_threshold=0.5)
        fields.update(changes)
        out = suggest_causes(labels, probs, embeddings=pool, train_embeddings=train, train_labels=train_labels,
                             transform_evidence=TransformEvidence(**fields), candidates=cand, thresholds=thresholds)
        assert out.cause[0] == "rare"
        return out.evidence[0]["text"]

    assert "rotating -40° gives '0' at 0.97" in text() and "fails because" in text()
    assert "no more convincing than the false fixes" in text() and "not above 0.50" in text()
    assert "the model then says '2', not '0'" in text(predicted_after=np.array([2]))
    assert "under the confident threshold of '0' (0.50)" in text(after=np.array([0.4]))
    assert "not a typical '0' (p=0.010 < 0.05)" in text(typicality=np.array([0.01]))
    assert "a slightly different rotation loses it" in text(stable=np.array([False]))
    assert "fails because it is not convincing;" in text(null_threshold=None)


def test_each_cause_on_constructed_candidates(rng):
    train, train_labels, centres = clusters(rng, per_class=80)
    # class 2 is starved in training
    keep = (train_labels != 2) | (np.arange(len(train_labels)) % 8 == 0)
    train, train_labels = train[keep], train_labels[keep]
    pool, labels, _ = clusters(np.random.default_rng(5), per_class=100)
    pred = labels.copy()
    starved = np.flatnonzero(labels == 2)
    pred[starved[:40]] = 3  # the starved class is under-predicted on the pool
    probs = one_hot_probs(pred, 0.95)
    # candidates: 0 a flip (a typical 1 labelled 0); 1 a rotated 0 (atypical, restored by -40°);
    # 2 a rare 0 (far from everything); 3 a 2 pushed into 3; 4 a correct 0 that is simply fine
    mislabel, rotated, rare, pushed, fine = 0, 1, 2, int(starved[0]), 3
    pool[mislabel] = centres[1] + 0.1
    probs[mislabel] = one_hot_probs([1], 0.99)[0]
    pool[rotated] = np.abs(rng.standard_normal(DIM) * 3)
    probs[rotated] = one_hot_probs([3], 0.6)[0]
    pool[rare] = np.abs(rng.standard_normal(DIM) * 3) + 2.0
    probs[rare] = one_hot_probs([0], 0.5)[0]
    cand = np.array([mislabel, rotated, rare, pushed, fine])
    evidence = _evidence(len(cand), restores=[1], target=labels[cand])
    out = suggest_causes(labels, probs, embeddings=pool, train_embeddings=train, train_labels=train_labels,
                         transform_evidence=evidence, candidates=cand, class_names=["zero", "one", "two", "three"])
    assert isinstance(out, CauseSuggestions)
    assert out.cause.tolist() == ["mislabel", "augment", "rare", "imbalance", "unclear"]
    assert out.suggested_label.tolist() == [1, -1, -1, -1, -1]
    assert np.all((out.confidence >= 0) & (out.confidence <= 1))
    assert out.confidence[0] > 0.9
    json.dumps(list(out.evidence))  # JSON-able
    ev = out.evidence
    assert "one" in ev[0]["text"] and "nearest training images are 'one'" in ev[0]["text"]
    assert ev[0]["neighbours"]["labels"].count("one") >= 8 and len(ev[0]["neighbours"]["train_ids"]) == 10
    assert ev[1]["transform"]["rotate"] == -40.0 and ev[1]["before"] == 0.05 and ev[1]["after"] == 0.97
    assert ev[1]["text"].startswith("rotating -40° gives 'zero' at 0.97")
    assert ev[2]["density"]["percentile"] > 95 and len(ev[2]["density"]["train_ids"]) == 10
    assert ev[3]["imbalance"]["pushed_into"] == "three" and ev[3]["imbalance"]["under_represented"]
    assert "'two' is" in ev[3]["text"]
    assert ev[4]["text"].startswith("no test is convincing")
    # a plain sentence per cause, checkable by looking, with no statistics in it
    assert ev[0]["summary"].startswith("it looks like the 'one's in training, not the 'zero's")
    assert ev[1]["summary"] == "rotating -40° makes it a clear 'zero'"
    assert ev[2]["summary"].startswith("nothing like it in training")
    assert ev[3]["summary"].startswith("'two' is rare in training") and "'three'" in ev[3]["summary"]
    assert ev[4]["summary"].startswith("no cause is clear")
    assert not any(word in e["summary"] for e in ev for word in ("p=", "typicality", "threshold", "%"))
    assert out.counts() == {"mislabel": 1, "imbalance": 1, "augment": 1, "rare": 1, "unclear": 1}
    # without transform evidence the rotated candidate cannot be augment
    plain = suggest_causes(labels, probs, embeddings=pool, train_embeddings=train, train_labels=train_labels,
                           candidates=cand)
    assert plain.cause[1] != "augment"


def test_the_label_contrast_decides_whether_a_confident_misclassification_is_a_wrong_label(rng):
    """A misclassified example the model is sure of is a wrong label only if it is more typical of
    the other class than of its own (w > 1/2): an unusual style the pool's own examples of the class
    share (other writers) gives w < 1/2, and is not taken for a wrong label. For a class starved in
    training only the pool's own contrast counts."""
    from hardcase.miner.causes.label_issues import ContrastEvidence

    train, train_labels, centres = clusters(rng, per_class=80)
    pool, labels, _ = clusters(np.random.default_rng(5), per_class=100)
    probs = one_hot_probs(labels, 0.95)
    pool[0] = centres[1] + 0.1  # a typical 1 in the training embedding space, labelled 0
    probs[0] = one_hot_probs([1], 0.99)[0]
    cand = np.array([0])

    def suggest(weight, pool_weight=None, train_labels=train_labels, train=train):
        n = len(labels)
        contrast = ContrastEvidence(np.full(n, 0.5), np.full(n, 0.5))
        contrast.weight[0] = weight
        contrast.pool_weight[0] = weight if pool_weight is None else pool_weight
        return suggest_causes(labels, probs, embeddings=pool, train_embeddings=train, train_labels=train_labels,
                              candidates=cand, label_contrast=contrast)

    assert suggest(0.9).cause[0] == "mislabel" and suggest(0.9).evidence[0]["label_weight"] == 0.9
    assert suggest(0.3).cause[0] != "mislabel"
    assert suggest(0.9).confidence[0] > suggest(0.6).confidence[0]
    # class 0 starved in training: the pool's contrast (0.3) overrules the mean (0.9)
    starved = (train_labels != 0) | (np.arange(len(train_labels)) % 16 == 0)
    assert suggest(0.9, 0.3).cause[0] == "mislabel"
    assert suggest(0.9, 0.3, train_labels[starved], train[starved]).cause[0] != "mislabel"
    assert suggest(0.9, 0.8, train_labels[starved], train[starved]).cause[0] == "mislabel"
    with pytest.raises(ValueError, match="label_contrast.weight must lie in"):
        suggest(1.5)
    with pytest.raises(TypeError, match="label_contrast must be a ContrastEvidence"):
        suggest_causes(labels, probs, embeddings=pool, train_embeddings=train, train_labels=train_labels,
                       candidates=cand, label_contrast=np.ones(len(labels)))


def test_pool_neighbour_votes_count_the_other_labelled_pool_examples_in_bounded_blocks(rng, tmp_path):
    from hardcase.miner.causes import pool_neighbour_votes
    from hardcase.miner.causes.neighbours import _compute_pool_votes, _prepare

    pool, labels, centres = clusters(rng, per_class=30)
    labels = labels.copy()
    labels[0] = 2  # a 0 labelled 2: its look-alikes are the other 0s
    labels[5] = -1  # an unlabelled 0: never anyone's neighbour
    rows = np.array([0, 1, 40])
    votes = pool_neighbour_votes(labels, embeddings=pool, rows=rows, n_classes=K, k=10)
    assert votes.shape == (3, K)
    assert votes[0].tolist() == [1.0, 0.0, 0.0, 0.0]  # not its own neighbour: none of the others is a 2
    assert votes[1, 0] + votes[1, 2] == 1.0 and votes[1, 2] <= 0.1  # another 0: at most the one labelled 2
    np.testing.assert_allclose(votes.sum(axis=1), 1.0)
    assert votes[2, 1] == 1.0
    # a float16 memory map read a few rows at a time gives the same votes as the array at once
    path = tmp_path / "emb.npy"
    np.save(path, pool.astype(np.float16))
    mapped = np.load(path, mmap_mode="r")
    queries = _prepare(np.asarray(mapped[rows], dtype=np.float32), "cosine")
    small_blocks = _compute_pool_votes(queries, rows, mapped, labels, 10, "cosine", K, block_rows=7)
    np.testing.assert_allclose(small_blocks, pool_neighbour_votes(labels, embeddings=mapped, rows=rows, n_classes=K))
    with pytest.raises(ValueError, match="rows has value 500"):
        pool_neighbour_votes(labels, embeddings=pool, rows=[500], n_classes=K)
    with pytest.raises(ValueError, match="embeddings has 10 rows but labels has N=120 rows"):
        pool_neighbour_votes(labels, embeddings=pool[:10], rows=rows, n_classes=K)


def test_a_misreading_the_pool_backs_with_look_alikes_is_not_a_wrong_label(rng):
    """A confident misclassification that is typical of the other class is a wrong label when its
    label is isolated among its look-alikes in the pool; when several of them carry the same label
    (another writer's style the model misreads), it is an unusual image, not a wrong label."""
    train, train_labels, centres = clusters(rng, per_class=80)
    pool, labels, _ = clusters(np.random.default_rng(5), per_class=100)
    probs = one_hot_probs(labels, 0.95)
    style = centres[1] + 0.1 + 0.3 * np.eye(DIM)[5]  # looks like a 1 to the model, a little off
    pool[:10] = style + 0.02 * rng.standard_normal((10, DIM))  # the candidate and 9 look-alikes
    probs[:10] = one_hot_probs([1] * 10, 0.99)
    cand = np.array([0])

    def suggest(look_alike_labels):
        given = labels.copy()
        given[:10] = [0, *look_alike_labels]
        return suggest_causes(given, probs, embeddings=pool, train_embeddings=train, train_labels=train_labels,
                              candidates=cand)

    isolated = suggest([1] * 9)  # its look-alikes are labelled 1: the 0 is a wrong label
    assert isolated.cause[0] == "mislabel" and isolated.suggested_label[0] == 1
    assert isolated.evidence[0]["pool_neighbours"] == {"k": 10, "agreement": 1.0, "given_agreement": 0.0}
    assert "none of its 10 nearest pool images is labelled '0'" in isolated.evidence[0]["text"]
    backed = suggest([0] * 5 + [1] * 4)  # five look-alikes share its label 0, four say 1
    assert backed.cause[0] == "rare"
    assert backed.evidence[0]["pool_neighbours"]["given_agreement"] == 0.5
    assert "5 of its 10 nearest pool images are labelled '0' too" in backed.evidence[0]["text"]
    # the same with fewer backing it than saying 1 (a systematic confusion): a wrong label
    assert suggest([0] * 3 + [1] * 6).cause[0] == "mislabel"


def test_the_restoration_threshold_separates_false_fixes_from_real_restorations():
    from hardcase.models.transform_search import NullCalibration, SearchSpace, own_warps

    null = np.concatenate([np.zeros(18), [0.3, 0.5, 0.7, 0.9]])  # 22 false fixes, a heavy tail
    alone = NullCalibration(rate=4 / 22, statistic=null, alpha=0.05)
    assert alone.threshold == alone.quantile == 0.9  # conformal rank ceil(23 * 0.95) = 22: the largest
    # real restorations of warped references: the cut with fewest errors is 0.5 (2 false fixes
    # above it, 1 of 5 restorations at or below it), lower than the quantile
    both = NullCalibration(rate=4 / 22, statistic=null, alpha=0.05, restored=np.array([0.0, 0.6, 0.8, 0.95, 0.95]))
    assert both.threshold == 0.5
    # never above the quantile, whatever the restorations
    assert NullCalibration(rate=0.1, statistic=null, alpha=0.05, restored=np.array([0.0, 0.0])).threshold <= 0.9
    warps = own_warps(9, SearchSpace(), seed=1)
    assert [w.rotate != 0 for w in warps[::3]] == [True] * 3 and all(w.perspective for w in warps[1::3])
    assert all(15 <= abs(w.shear) <= 45 for w in warps[2::3]) and all(15 <= abs(w.rotate) <= 90 for w in warps[::3])


def test_unlabelled_candidates_are_judged_against_their_prediction(rng):
    train, train_labels, centres = clusters(rng)
    pool, labels, _ = clusters(np.random.default_rng(9), per_class=30)
    probs = one_hot_probs(labels, 0.9)
    labels = np.full(len(labels), -1)
    pool[0] = np.abs(rng.standard_normal(DIM) * 3) + 2.0
    out = suggest_causes(labels, probs, embeddings=pool, train_embeddings=train, train_labels=train_labels,
                         candidates=np.array([0, 1]))
    assert out.cause.tolist() == ["rare", "unclear"]
    assert out.evidence[0]["given"]["label"] is None


# ----------------------------------------------------------------------------- validation


def test_inputs_are_validated_at_the_door(rng):
    emb, labels, _ = clusters(rng, per_class=10)
    probs = one_hot_probs(labels, 0.9)
    density = fit_class_density(emb, labels, n_classes=K, k=3)
    with pytest.raises(ValueError, match="metric must be one of cosine, euclidean"):
        nearest_neighbours(emb, emb, metric="manhattan")
    with pytest.raises(ValueError, match="k=50 but references has only 40 usable rows"):
        nearest_neighbours(emb, emb, k=50)
    with pytest.raises(ValueError, match="queries has D=8 columns but references has D=3"):
        nearest_neighbours(emb, emb[:, :3])
    with pytest.raises(ValueError, match="exclude_self needs queries to be the references"):
        nearest_neighbours(emb[:5], emb, exclude_self=True)
    with pytest.raises(ValueError, match="queries row 2 contains NaN"):
        bad = emb.copy()
        bad[2, 1] = np.nan
        nearest_neighbours(bad, emb)
    with pytest.raises(TypeError, match="train_labels must be an integer array"):
        fit_class_density(emb, labels.astype(float))
    with pytest.raises(ValueError, match="train_labels has length 39 but train_embeddings has N=40"):
        fit_class_density(emb, labels[:-1])
    with pytest.raises(ValueError, match="train_labels has value 4 at index 0 but there are K=2 classes"):
        fit_class_density(emb, np.full(40, 4), n_classes=2)
    with pytest.raises(ValueError, match="embeddings has D=3 columns but the density was fitted on D=8"):
        class_typicality(emb[:, :3], labels, density=density)
    with pytest.raises(TypeError, match="density must be a ClassDensity"):
        class_typicality(emb, labels, density="nope")
    with pytest.raises(ValueError, match="alpha must be strictly between 0 and 1"):
        class_imbalance(labels, probs, alpha=0.0)
    with pytest.raises(ValueError, match="pred_probs row 0 sums to 2"):
        suggest_causes(labels, probs * 2, embeddings=emb, density=density)
    with pytest.raises(ValueError, match="labels has value 9 at index 0 but pred_probs has K=4 columns"):
        suggest_causes(np.full(40, 9), probs, embeddings=emb, density=density)
    with pytest.raises(ValueError, match="embeddings has 39 rows but pred_probs has N=40 rows"):
        suggest_causes(labels, probs, embeddings=emb[:-1], density=density)
    with pytest.raises(ValueError, match="pass train_embeddings and train_labels"):
        suggest_causes(labels, probs, embeddings=emb)
    with pytest.raises(ValueError, match="candidates repeats a row"):
        suggest_causes(labels, probs, embeddings=emb, density=density, candidates=[1, 1])
    with pytest.raises(ValueError, match="candidates has value 40 at position 0 but pred_probs has N=40 rows"):
        suggest_causes(labels, probs, embeddings=emb, density=density, candidates=[40])
    with pytest.raises(ValueError, match="transform_evidence has 5 entries but there are 2 candidates"):
        suggest_causes(labels, probs, embeddings=emb, density=density, candidates=[0, 1],
                       transform_evidence=_evidence(5))
    with pytest.raises(TypeError, match="transform_evidence must be a TransformEvidence"):
        suggest_causes(labels, probs, embeddings=emb, density=density, candidates=[0], transform_evidence={})
    with pytest.raises(ValueError, match="class_names has 2 names but pred_probs has K=4 columns"):
        suggest_causes(labels, probs, embeddings=emb, density=density, class_names=["a", "b"])
    with pytest.raises(ValueError, match="TransformEvidence.before has 1 entries but target has 2"):
        TransformEvidence(target=np.zeros(2), family=np.array(["none"] * 2), transform=({}, {}),
                          before=np.zeros(1), after=np.zeros(2), predicted_after=np.zeros(2),
                          typicality=np.zeros(2), stable=np.zeros(2, bool), restores=np.zeros(2, bool),
                          smallest=(None, None))


# ----------------------------------------------------------------------------- the workflow


@pytest.fixture(scope="module")
def mined_run(tmp_path_factory, demo_model_path, mnist_small):
    """A mined run over 400 pool images with injected faults, and its training data."""
    from hardcase.models.faults import inject_faults
    from hardcase.review_app.workflows.mining import MiningOptions, mine
    from hardcase.store.db import open_store

    train_x, train_y, pool_x, pool_y = mnist_small
    folder = tmp_path_factory.mktemp("causes")
    some = np.sort(np.random.default_rng(0).choice(len(pool_y), size=400, replace=False))
    pool = inject_faults(pool_x[some], pool_y[some], n_classes=10, flip=0.05, rotate=0.05, perspective=0.0,
                         rare=0.03, seed=1)
    np.savez(folder / "pool.npz", x=pool.images, y=pool.labels)
    np.savez(folder / "train.npz", x=train_x, y=train_y)
    store = open_store(f"sqlite:///{folder}/hc.db")
    mine(store, MiningOptions(run_name="r", model_path=str(demo_model_path), data_path=str(folder / "pool.npz"),
                              train_data=str(folder / "train.npz"), per_class=3, seed=0, suggest=False),
         artifacts_dir=folder / "artifacts", progress=False)
    yield store, folder, pool
    store.dispose()


def test_suggest_for_run_stores_a_cause_and_evidence_for_every_candidate(mined_run):
    from sqlalchemy import select

    from hardcase.review_app.workflows.suggest import TRAIN_CACHE, suggest_for_run
    from hardcase.store import api
    from hardcase.store.schema import Candidate, Sample

    store, folder, pool = mined_run
    report = suggest_for_run(store, "r", artifacts_dir=folder / "artifacts", progress=False, null_samples=20)
    assert report.n_candidates >= 20 and sum(report.counts.values()) == report.n_candidates
    assert not report.train_cached and (folder / "artifacts" / "r" / TRAIN_CACHE).exists()
    assert 0 < report.model_share < 1 and report.ms_per_candidate > 0
    assert "training data" in report.reference
    assert f"suggested causes for {report.n_candidates} candidates" in report.summary()
    with store.Session.begin() as session:
        rows = session.execute(
            select(Candidate.id, Candidate.suggested_cause, Candidate.suggested_label, Candidate.suggestion_confidence,
                   Candidate.evidence, Sample.source_index)
            .join(Sample, Sample.id == Candidate.sample_id).where(Candidate.run_id == 1)
        ).all()
        view = api.get_candidate(session, rows[0].id)
    assert len(rows) == report.n_candidates
    assert view.suggested_cause == rows[0].suggested_cause and view.evidence["text"]
    for row in rows:
        assert row.suggested_cause in ("augment", "rare", "imbalance", "mislabel", "unclear")
        assert 0 <= row.suggestion_confidence <= 1
        assert row.evidence["text"] and "neighbours" in row.evidence and "transform" in row.evidence
        assert (row.suggested_label is not None) == (row.suggested_cause == "mislabel")
    flipped = [r for r in rows if pool.fault[r.source_index] == "flip"]
    assert flipped, "the mined candidates include flipped labels"
    right = [r for r in flipped if r.suggested_cause == "mislabel" and r.suggested_label == str(pool.true_labels[r.source_index])]
    assert len(right) >= 0.6 * len(flipped)
    again = suggest_for_run(store, "r", artifacts_dir=folder / "artifacts", progress=False, null_samples=20)
    assert again.train_cached and again.counts == report.counts


def test_suggest_for_run_without_training_data_uses_the_pool(mined_run, tmp_path):
    from sqlalchemy import update

    from hardcase.review_app.workflows.suggest import SuggestionInputError, suggest_for_run
    from hardcase.store.schema import Run

    store, folder, _ = mined_run
    with store.Session.begin() as session:
        session.execute(update(Run).values(params={"per_class": 3}))
    try:
        report = suggest_for_run(store, "r", artifacts_dir=folder / "artifacts", progress=False, null_samples=10)
        assert "the pool's" in report.reference and sum(report.counts.values()) == report.n_candidates
    finally:
        with store.Session.begin() as session:
            session.execute(update(Run).values(params={"per_class": 3, "train_data": str(folder / "train.npz")}))
    with pytest.raises(SuggestionInputError, match="artifacts are missing"):
        suggest_for_run(store, "r", artifacts_dir=tmp_path, progress=False)


# ----------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_fault_benchmark_runs_at_small_size(mnist10k_dir, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setenv("HARDCASE_SHARED_DATA", str(mnist10k_dir.parent))
    sys.path.insert(0, str(os.path.join(os.path.dirname(__file__), "..", "bench")))
    try:
        import faults as bench
    finally:
        sys.path.pop(0)
    results = bench.main(["--small", "--model-dir", str(tmp_path), "--json", str(tmp_path / "out.json")])
    (run,) = results["runs"]
    printed = capsys.readouterr().out
    for heading in ("1. label errors", "2. recall of all", "3. causes of", "4. cost"):
        assert heading in printed
    assert set(run["models"]) == {"full", "cut"}
    for r in run["models"].values():
        le = r["label_errors"]
        assert 0 <= le["hardcase"]["precision"] <= 1 and 0 <= le["cleanlab"]["precision"] <= 1
        assert r["hardest"]["hardcase"] >= r["hardest"]["confidence"]
        assert r["causes"]["per_cause"] and sum(r["candidate_truth"].values()) == 100
        assert r["cost"]["evaluations_per_candidate"] < 286 / 4  # much less than the exhaustive grid
        assert r["restore"]["n"] > 0 and r["restore"]["search"] >= r["restore"]["grid"] - 0.2
        # the exact inverse of each injected warp gives most augment candidates their true label back
        assert r["restore"]["oracle_right"] >= 0.5 and 0 <= r["restore"]["oracle_restores"] <= r["restore"]["oracle_right"]
    assert "imbalance" in run["models"]["cut"]["causes"]["per_cause"]
    stored = json.loads((tmp_path / "out.json").read_text())
    assert stored["runs"][0]["models"]["full"]["causes"]["macro"] == run["models"]["full"]["causes"]["macro"]
    macro = results["summary"]["full"]["macro cause accuracy"]
    assert macro["values"] == [run["models"]["full"]["causes"]["macro"]] and macro["min"] == macro["max"]
    # the summary over seeds prints one row per measure
    bench.print_summary(results["summary"], [0])
    assert "precision@k hardcase" in capsys.readouterr().out


def test_transforms_are_described_in_words():
    assert describe_transform(None) == "no transform"
    assert describe_transform({"rotate": -40.0, "scale": 1.0}) == "rotating -40°"
    assert (describe_transform({"perspective": 0.15, "direction": 90.0, "scale": 0.75, "shift_x": -0.1, "shift_y": 0.04})
            == "tilting 0.15 toward 90° and scaling by 0.75 and shifting 10% left and 4% down")
    assert describe_transform({"aspect": 0.8, "shear": 12.0}) == "stretching taller by 1.25 and shearing +12°"


# ----------------------------------------------------------------------------- the package


def test_the_package_exports_what_the_single_module_did():
    before = {"RULE_ORDER", "DEFAULT_ALPHA", "DEFAULT_K", "METRICS", "SUGGESTED", "CauseSuggestions",
              "ClassDensity", "ClassImbalance", "Neighbours", "TransformEvidence", "Typicality",
              "class_imbalance", "class_typicality", "describe_transform", "fit_class_density",
              "nearest_neighbours", "neighbour_label_quality_score", "neighbour_votes", "rank_label_issues",
              "suggest_causes"}  # class_thresholds is now scores.confident_thresholds(unknown_labels="as_predicted")
    assert before <= set(causes.__all__)
    assert all(hasattr(causes, name) for name in causes.__all__)


def test_the_rule_order_is_a_priority_over_the_vocabulary():
    assert causes.RULE_ORDER == ("imbalance", "mislabel", "augment", "rare")
    assert sorted(causes.RULE_ORDER) == sorted(vocabulary.CAUSES)
    # the counts keep the rule order, as the workflows print them
    assert causes.SUGGESTED == (*causes.RULE_ORDER, vocabulary.UNCLEAR)
    assert set(causes.SUGGESTED) == set(vocabulary.SUGGESTED_CAUSES)
