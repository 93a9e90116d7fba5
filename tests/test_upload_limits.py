"""An uploaded image is refused from its header when it declares more pixels than the limit."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from test_sources_limits import blank_png

from hardcase.miner.sources import MAX_PIXELS


@pytest.fixture
def try_handlers(tmp_path):
    from hardcase.review_app.app.handlers.try_tab import TryHandlers
    from hardcase.review_app.workflows.review import ReviewService
    from hardcase.store.db import open_store

    store = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    yield TryHandlers(ReviewService(store))
    store.dispose()


def _memory_mb(field: str) -> float:
    """This process's ``VmRSS`` or ``VmHWM`` (its peak) in MB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def test_a_decompression_bomb_upload_is_refused_before_decoding(try_handlers, tmp_path):
    bomb = blank_png(tmp_path / "bomb.png", 13000, 13000)
    assert bomb.stat().st_size < 400_000  # under the 5 MB upload cap: only the header can tell
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
    before = _memory_mb("VmRSS")
    with pytest.raises(gr.Error, match="13000x13000 pixels \\(169 Mpx\\); uploads are limited to 40 Mpx"):
        try_handlers.upload(str(bomb))
    # refused from the header: decoding it as RGBA would have taken 676 MB at its peak
    assert _memory_mb("VmHWM") - before < 50


def test_an_ordinary_upload_still_works(try_handlers, tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray(np.full((60, 40), 255, np.uint8)).save(path)
    shown = try_handlers.upload(str(path))
    assert shown["background"].ndim == 3


def test_the_served_process_refuses_to_decode_any_image_past_the_limit(try_handlers, tmp_path, monkeypatch):
    from hardcase.review_app.app import limit_decoded_pixels

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    limit_decoded_pixels()  # what `hardcase serve` does before building the app
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS // 2
    bomb = blank_png(tmp_path / "b.png", 13000, 13000)
    with pytest.raises(Image.DecompressionBombError), Image.open(bomb) as im:
        im.load()
    # Gradio's own decoding of an API payload meets the same limit; the upload handler says why
    with pytest.raises(gr.Error, match="declares more pixels than uploads may have \\(40 Mpx\\)"):
        try_handlers.upload(str(bomb))
