"""The transform value type on the ground floor: validation naming the field, the dict round trip
the evidence relies on, the one wording, and no pixel library behind it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from hardcase.miner.transform import FIELDS, MAX_PERSPECTIVE, MAX_SHEAR, MAX_SHIFT, Transform

MODULE = Path(__file__).resolve().parents[1] / "miner" / "transform.py"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rotate", 181.0),
        ("perspective", MAX_PERSPECTIVE + 0.01),
        ("perspective", -0.1),
        ("scale", 0.2),
        ("scale", 4.5),
        ("shift_x", MAX_SHIFT + 0.1),
        ("shift_y", -MAX_SHIFT - 0.1),
        ("aspect", 2.5),
        ("shear", MAX_SHEAR + 1),
        ("direction", float("nan")),
        ("rotate", float("inf")),
        ("shear", "12"),
    ],
)
def test_an_invalid_parameter_is_named(field, value):
    with pytest.raises(ValueError, match=rf"^transform {field} must be"):
        Transform(**{field: value})


def test_the_limits_themselves_are_valid():
    Transform(rotate=-180, perspective=MAX_PERSPECTIVE, scale=0.25, shift_x=MAX_SHIFT, shift_y=-MAX_SHIFT,
              aspect=0.5, shear=-MAX_SHEAR)
    Transform(rotate=180, scale=4, aspect=2, shear=MAX_SHEAR)


def test_to_dict_and_from_dict_round_trip():
    transform = Transform(rotate=-40, perspective=0.1, direction=90, scale=0.8, shift_x=0.1, shift_y=-0.05,
                          aspect=1.2, shear=-8)
    data = transform.to_dict()
    assert tuple(data) == FIELDS and all(type(v) is float for v in data.values())
    assert Transform.from_dict(data) == transform
    assert Transform.from_dict(Transform().to_dict()) == Transform()


def test_from_dict_takes_partial_evidence_and_names_unknown_keys():
    # evidence stored before shifts, stretch and shear existed has only some of the keys
    assert Transform.from_dict({"rotate": 5}) == Transform(rotate=5)
    assert Transform.from_dict({"perspective": 0.15, "direction": 90}) == Transform(perspective=0.15, direction=90)
    assert Transform.from_dict(None) == Transform.from_dict({}) == Transform()
    with pytest.raises(ValueError, match=r"unknown transform keys \['skew'\]"):
        Transform.from_dict({"rotate": 5, "skew": 3})


@pytest.mark.parametrize(
    ("transform", "words"),
    [
        (Transform(), "no transform"),
        (Transform(direction=45), "no transform"),  # a direction without a tilt moves nothing
        (Transform(rotate=-40), "rotating -40°"),
        (Transform(rotate=-40, perspective=0.15, direction=90), "rotating -40° and tilting 0.15 toward 90°"),
        (Transform(shift_x=0.1), "shifting 10% right"),
        # the direction in the review slider's terms (-180..180), as Apply will set it
        (Transform(perspective=0.2, direction=270), "tilting 0.20 toward -90°"),
        (Transform(perspective=0.15, direction=90, scale=0.75, shift_x=-0.1, shift_y=0.04),
         "tilting 0.15 toward 90° and scaling by 0.75 and shifting 10% left and 4% down"),
        (Transform(aspect=1.2, shear=-8), "stretching wider by 1.20 and shearing -8°"),
        (Transform(aspect=0.8, shear=12), "stretching taller by 1.25 and shearing +12°"),
    ],
)
def test_describe_wording(transform, words):
    assert transform.describe() == words
    assert Transform.from_dict(transform.to_dict()).describe() == words


def test_the_models_layer_re_exports_the_same_type():
    from hardcase.models import transforms

    assert transforms.Transform is Transform
    assert (transforms.FIELDS, transforms.MAX_PERSPECTIVE, transforms.MAX_SHIFT, transforms.MAX_SHEAR) == (
        FIELDS, MAX_PERSPECTIVE, MAX_SHIFT, MAX_SHEAR)


def test_the_module_imports_only_the_standard_library():
    imported = set()
    for node in ast.walk(ast.parse(MODULE.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    code = ("import sys; import hardcase.miner.transform; "
            "print(sorted(m for m in ('numpy', 'albumentations', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
