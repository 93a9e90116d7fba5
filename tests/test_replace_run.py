"""``hardcase mine --replace``: a run nobody reviewed can be mined anew under its name; a
reviewed one cannot (reviews are never deleted)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from hardcase.review_app.cli import main
from hardcase.store import api
from hardcase.store.db import open_store
from hardcase.store.schema import Candidate


def test_replace_mines_a_run_anew_until_someone_reviews_it(tmp_path, demo_model_path, mnist_small, capsys):
    pool_x, pool_y = mnist_small[2], mnist_small[3]
    first, second = tmp_path / "first.npz", tmp_path / "second.npz"
    np.savez(first, x=pool_x[:40], y=pool_y[:40])
    np.savez(second, x=pool_x[40:100], y=pool_y[40:100])
    db = f"sqlite:///{tmp_path / 'r.db'}"

    def mine(data, *extra):
        return main(["mine", "--model", str(demo_model_path), "--data", str(data), "--db", db, "--run", "r",
                     "--budget", "4", "--no-suggest", "--quiet", *extra])

    assert mine(first) == 0
    capsys.readouterr()
    assert mine(second) == 2  # another data set under the same name: refused, as before
    assert "choose another --run name" in capsys.readouterr().err
    leftover = tmp_path / "r_artifacts" / "r" / "stale.txt"
    leftover.write_text("from the first run")
    assert mine(second, "--replace") == 0
    assert "run 'r' replaced" in capsys.readouterr().err
    assert not leftover.exists()
    store = open_store(db)
    with store.Session() as session:
        run = api.get_run(session, "r")
        assert run.status == "done" and run.n_total == 60
        candidate = session.scalar(select(Candidate.id).where(Candidate.run_id == run.id).limit(1))
    with store.Session.begin() as session:
        api.submit_review(session, candidate, reviewer="ana", cause="rare", seen_version=0)
    assert mine(first, "--replace") == 2
    refusal = capsys.readouterr().err
    assert "cannot replace run 'r'" in refusal and "has 1 reviews" in refusal
    with store.Session() as session:
        assert api.get_run(session, "r").n_total == 60
        assert [r.reviewer for r in api.reviews_for(session, candidate)] == ["ana"]
    store.dispose()
