"""Review-tab handlers on a stub service: values the sliders can take."""

from __future__ import annotations

import pytest

from hardcase.miner.transform import Transform
from hardcase.review_app.app.handlers.review import Handlers, wrap_degrees


class _Service:
    def __init__(self, transform):
        self.transform = transform

    def suggested_transform(self, candidate_id):
        return self.transform


@pytest.mark.parametrize(("angle", "wrapped"), [(270.0, -90.0), (337.5, -22.5), (180.0, -180.0), (-180.0, -180.0),
                                                 (0.0, 0.0), (90.0, 90.0), (-190.0, 170.0), (720.0, 0.0)])
def test_angles_wrap_into_the_sliders_range(angle, wrapped):
    assert wrap_degrees(angle) == pytest.approx(wrapped)


def test_applying_a_suggested_tilt_toward_270_degrees_sets_sliders_in_range():
    handlers = Handlers(_Service(Transform(rotate=-30.0, perspective=0.2, direction=270.0, scale=1.1)))
    rotate, perspective, direction, scale, *_ = handlers.apply_suggestion(7)
    assert (rotate, perspective, direction, scale) == pytest.approx((-30.0, 0.2, -90.0, 1.1))
    assert -180 <= direction <= 180
    # the same tilt either way
    import numpy as np

    from hardcase.models.transforms import apply_transform

    image = np.random.default_rng(0).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    np.testing.assert_array_equal(apply_transform(image, Transform(perspective=0.2, direction=direction)),
                                  apply_transform(image, Transform(perspective=0.2, direction=270.0)))
