"""Long exports report their progress: every 10,000 rows (Parquet: every column), then the end."""

from __future__ import annotations

import pytest

from hardcase.store.export import PROGRESS_EVERY, read_rows, write_rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_write_rows_reports_rows_written_up_to_the_total(tmp_path, fmt):
    columns = ["sample_id", "given_label", "hardness_score"]
    rows = [(index, str(index % 10), index / 25_000) for index in range(25_000)]
    calls = []
    path = write_rows(columns, rows, tmp_path / f"scores.{fmt}", progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (25_000, 25_000)
    assert all(total == 25_000 for _, total in calls)
    done = [count for count, _ in calls]
    assert done == sorted(done) and len(calls) >= 3
    if fmt != "parquet":
        assert done[:2] == [PROGRESS_EVERY, 2 * PROGRESS_EVERY]
    assert read_rows(path)[1][-1] == rows[-1]  # and the file is whole
