"""Input at the door: what a data source refuses, on files written here with known faults.

NaN / inf rows, arrays of another size than the model's, image files whose header declares
too many pixels, manifest paths leading outside the manifest's folder, and malformed arrays
and label files; then the same options through ``open_for_model`` and ``hardcase mine``.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hardcase.miner.sources import MAX_PIXELS, RowError, open_source, write_idx
from hardcase.miner.spec import PreprocessingSpec
from hardcase.review_app.workflows.data import open_for_model, read_options

BAD_ROWS = [3, 7]


def collect(source, batch_size: int = 4, **kw):
    """(indices (K,), images (K, H, W, C) or None, errors sorted by row) of a whole pass."""
    batches = list(source.iter_batches(batch_size, **kw))
    indices = np.concatenate([b.indices for b in batches])
    images = [b.images for b in batches if len(b)]
    errors = sorted((e for b in batches for e in b.errors), key=lambda e: e.source_index)
    return indices, (np.concatenate(images) if images else None), errors


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def blank_png(path: Path, width: int, height: int) -> Path:
    """An all-black 8-bit grayscale PNG written row by row: 13000x13000 takes ~170 kB on disk
    and never exists decoded in this process."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    deflate = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


# --------------------------------------------------------------------------- NaN / inf


def float_rows_with_faults(dtype) -> np.ndarray:
    """(10, 5, 5) values in [0, 255); row 3 holds one NaN, row 7 an inf and a -inf."""
    x = (np.random.default_rng(0).random((10, 5, 5)) * 255).astype(dtype)
    x[3, 1, 2] = np.nan
    x[7, 0, 0] = np.inf
    x[7, 4, 4] = -np.inf
    return x


def save_as(fmt: str, folder: Path, x: np.ndarray) -> Path:
    if fmt == "idx":
        return write_idx(folder / "x-idx3-ubyte", x)
    if fmt == "idx.gz":
        return write_idx(folder / "x-idx3-ubyte.gz", x)
    if fmt == "npy":
        np.save(folder / "x.npy", x)
        return folder / "x.npy"
    if fmt == "npy-fortran":
        np.save(folder / "x.npy", np.asfortranarray(x))
        return folder / "x.npy"
    if fmt == "npz":
        np.savez(folder / "x.npz", x=x)
    else:
        np.savez_compressed(folder / "x.npz", x=x)
    return folder / "x.npz"


ARRAY_FORMATS = ["idx", "idx.gz", "npy", "npy-fortran", "npz", "npz-compressed"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ARRAY_FORMATS)
def test_nan_and_inf_rows_are_error_rows_and_the_others_read_exactly(tmp_path, fmt, dtype):
    x = float_rows_with_faults(dtype)
    path = save_as(fmt, tmp_path, x)
    good = [i for i in range(10) if i not in BAD_ROWS]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        src = open_source(path)
        indices, images, errors = collect(src)
        again = src.read([7, 2, 3, 9])
    assert indices.tolist() == good
    np.testing.assert_array_equal(images[..., 0], x[good].astype(np.float32))
    assert [e.source_index for e in errors] == BAD_ROWS
    assert errors[0].reason == "row 3 contains NaN/inf values (1 of 25 values)"
    assert errors[1].reason == "row 7 contains NaN/inf values (2 of 25 values)"
    assert all(e.uri == src.uri for e in errors)
    assert again.indices.tolist() == [2, 9]
    assert sorted(e.source_index for e in again.errors) == [3, 7]


def test_nan_rows_are_dropped_before_channels_and_resize(tmp_path):
    x = float_rows_with_faults(np.float32)
    np.save(tmp_path / "x.npy", x)
    src = open_source(tmp_path / "x.npy", image_size=(10, 10), channels=3, resize=True)
    indices, images, errors = collect(src, 3)
    good = [i for i in range(10) if i not in BAD_ROWS]
    assert indices.tolist() == good and [e.source_index for e in errors] == BAD_ROWS
    assert images.shape == (8, 10, 10, 3) and np.isfinite(images).all()
    expected = np.asarray(Image.fromarray(x[4], "F").resize((10, 10), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images[good.index(4), ..., 1], expected)


def test_float64_beyond_float32_is_an_error_row(tmp_path):
    x = np.zeros((4, 3, 3), np.float64)
    x[2, 1, 1] = 1e300  # finite in float64, inf once converted to the float32 batches hold
    np.save(tmp_path / "x.npy", x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in cast"
        indices, _, errors = collect(open_source(tmp_path / "x.npy"))
    assert indices.tolist() == [0, 1, 3]
    assert errors == [
        RowError(
            2,
            str(tmp_path / "x.npy"),
            "row 2 contains NaN/inf values (1 values beyond float32's range)",
        )
    ]


def test_integer_arrays_have_no_nan_rows(tmp_path):
    x = np.arange(4 * 9, dtype=np.int16).reshape(4, 3, 3) - 10
    np.save(tmp_path / "x.npy", x)
    indices, images, errors = collect(open_source(tmp_path / "x.npy"))
    assert indices.tolist() == [0, 1, 2, 3] and errors == []
    np.testing.assert_array_equal(images[..., 0], x.astype(np.float32))


def test_float_tiff_with_nan_is_an_error_row(tmp_path):
    planes = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)  # integers: exact in 'L'
    planes[1, 2, 3] = np.nan
    for i, plane in enumerate(planes):
        Image.fromarray(plane, "F").save(tmp_path / f"f{i}.tif")
    src = open_source(tmp_path, channels=1)
    indices, images, errors = collect(src)
    assert indices.tolist() == [0, 2]
    assert [(e.source_index, Path(e.uri).name) for e in errors] == [(1, "f1.tif")]
    assert errors[0].reason == "contains NaN/inf values (1 of 20 pixels)"
    np.testing.assert_array_equal(images[..., 0], planes[[0, 2]].astype(np.uint8))


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("fmt", ["idx", "npy", "npz"])
def test_an_array_of_another_size_is_refused_unless_resize(tmp_path, fmt):
    x = np.random.default_rng(1).integers(0, 256, (50, 5, 5), dtype=np.uint8)
    path = save_as(fmt, tmp_path, x)
    with pytest.raises(ValueError) as refused:
        open_source(path, image_size=(28, 28), channels=1)
    message = str(refused.value)
    assert message.startswith(f"{path}: images are 5x5 (HxW)")
    assert "28x28" in message and "resize=True" in message and "--resize" in message

    src = open_source(path, image_size=(28, 28), channels=1, resize=True)
    assert src.image_shape == (28, 28, 1)
    indices, images, errors = collect(src, 16)
    assert indices.tolist() == list(range(50)) and errors == []
    for i in (0, 49):
        expected = Image.fromarray(x[i]).resize((28, 28), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(images[i, ..., 0], np.asarray(expected))


def test_a_flat_array_of_another_size_is_refused_too(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((6, 25), np.uint8))  # 5x5 images, flattened
    with pytest.raises(ValueError, match=r"flat\.npy: images are 5x5 .* is 28x28"):
        open_source(tmp_path / "flat.npy", image_size=28)
    assert open_source(tmp_path / "flat.npy", image_size=28, resize=True).image_shape == (28, 28, 1)


def test_photos_of_another_size_are_resized_without_asking(tmp_path):
    """Documented: image files (folders, manifests) are resized to image_size; resize= is for
    arrays only."""
    rng = np.random.default_rng(2)
    photos = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(3)]
    for i, photo in enumerate(photos):
        save_png(tmp_path / "photos" / ("cat" if i < 2 else "dog") / f"{i}.png", photo)
    (tmp_path / "m.csv").write_text(
        "path,label\n"
        + "".join(f"photos/{'cat' if i < 2 else 'dog'}/{i}.png,x\n" for i in range(3))
    )
    for path in (tmp_path / "photos", tmp_path / "m.csv"):
        indices, images, errors = collect(open_source(path, image_size=(224, 224), channels=3))
        assert indices.tolist() == [0, 1, 2] and errors == []
        for i, photo in enumerate(photos):
            expected = Image.fromarray(photo).resize((224, 224), Image.Resampling.BILINEAR)
            np.testing.assert_array_equal(images[i], np.asarray(expected))


# --------------------------------------------------------------------------- decoded size

RSS_PROBE = """
import json, sys
from hardcase.miner.sources import open_source

def status_kb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

folder, max_pixels = sys.argv[1], int(sys.argv[2])
rss, peak = status_kb("VmRSS"), status_kb("VmHWM")
source = open_source(folder, image_size=(28, 28), channels=1, max_pixels=max_pixels)
batches = list(source.iter_batches(8, workers=1))
print(json.dumps({
    "rss_growth_mb": (status_kb("VmRSS") - rss) / 1024,
    "peak_growth_mb": (status_kb("VmHWM") - peak) / 1024,
    "indices": [i for b in batches for i in b.indices.tolist()],
    "errors": [[e.source_index, e.reason] for b in batches for e in b.errors],
}))
"""


def read_in_fresh_process(folder: Path, max_pixels: int) -> dict:
    """Read ``folder`` in a new interpreter: its peak RSS (VmHWM) starts from the imports."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", RSS_PROBE, str(folder), str(max_pixels)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def test_an_image_over_the_pixel_limit_is_an_error_row_never_decoded(tmp_path):
    folder = tmp_path / "pool"
    folder.mkdir()
    huge = blank_png(folder / "a_huge.png", 13000, 13000)  # sorted first: the probe meets it
    assert huge.stat().st_size < 1 << 20
    digits = np.random.default_rng(3).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    save_png(folder / "b.png", digits[0])
    save_png(folder / "c.png", digits[1])

    result = read_in_fresh_process(folder, MAX_PIXELS)
    assert result["indices"] == [1, 2]
    assert result["errors"] == [
        [
            0,
            "13000x13000 (HxW) = 169 Mpx exceeds the 40 Mpx limit "
            "(max_pixels; hardcase mine --max-pixels); not decoded",
        ]
    ]
    assert result["rss_growth_mb"] < 100 and result["peak_growth_mb"] < 100, result

    # the measurement sees a decode: with the limit lifted the 169 MB image is decoded
    lifted = read_in_fresh_process(folder, 10**9)
    assert lifted["indices"] == [0, 1, 2]
    assert lifted["peak_growth_mb"] > 150, lifted

    # in this process too: the digits read exactly
    indices, images, errors = collect(open_source(folder, channels=1, image_size=28))
    assert indices.tolist() == [1, 2] and [e.source_index for e in errors] == [0]
    np.testing.assert_array_equal(images[..., 0], digits)


def test_max_pixels_is_inclusive_and_applies_to_manifests(tmp_path):
    save_png(tmp_path / "img" / "small.png", np.full((20, 30), 7, np.uint8))  # 600 pixels
    save_png(tmp_path / "img" / "tiny.png", np.full((10, 10), 9, np.uint8))
    (tmp_path / "m.csv").write_text("path\nimg/small.png\nimg/tiny.png\n")
    indices, images, errors = collect(
        open_source(tmp_path / "m.csv", image_size=(10, 10), max_pixels=600)
    )
    assert indices.tolist() == [0, 1] and errors == []
    indices, images, errors = collect(
        open_source(tmp_path / "m.csv", image_size=(10, 10), max_pixels=599)
    )
    assert indices.tolist() == [1] and [e.source_index for e in errors] == [0]
    assert errors[0].reason.startswith("20x30 (HxW) = 0.0006 Mpx exceeds the 0.000599 Mpx limit")
    np.testing.assert_array_equal(images, np.full((1, 10, 10, 1), 9, np.uint8))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_pixels": 0}, ValueError, "max_pixels must be positive"),
        ({"max_pixels": 4e7}, TypeError, "max_pixels must be an int"),
        ({"max_pixels": True}, TypeError, "max_pixels must be an int"),
        ({"resize": "yes"}, TypeError, "resize must be True or False"),
        ({"allow_outside_root": 1}, TypeError, "allow_outside_root must be True or False"),
    ],
)
def test_the_new_arguments_are_checked(tmp_path, kwargs, error, match):
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(error, match=match):
        open_source(tmp_path / "x.npy", **kwargs)


# --------------------------------------------------------------------------- manifest paths


@pytest.fixture
def escaping_manifest(tmp_path):
    """data/m.csv with rows: inside, ../ escape, absolute outside, symlink out, absolute inside,
    /etc/passwd by relative escape, /etc/shadow."""
    secret = np.full((6, 6), 201, np.uint8)
    save_png(tmp_path / "outside" / "secret.png", secret)
    inside = np.full((6, 6), 17, np.uint8)
    save_png(tmp_path / "data" / "img" / "ok.png", inside)
    (tmp_path / "data" / "link.png").symlink_to(tmp_path / "outside" / "secret.png")
    rows = [
        "img/ok.png",
        "../outside/secret.png",
        str(tmp_path / "outside" / "secret.png"),
        "link.png",
        str(tmp_path / "data" / "img" / "ok.png"),
        "../../../../../../../../etc/passwd",
        "/etc/shadow",
    ]
    manifest = tmp_path / "data" / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{r},a\n" for r in rows))
    return manifest, inside, secret


def test_manifest_paths_outside_its_folder_are_error_rows(escaping_manifest):
    manifest, inside, _ = escaping_manifest
    src = open_source(manifest, image_size=6, channels=1)
    indices, images, errors = collect(src)
    assert indices.tolist() == [0, 4]
    np.testing.assert_array_equal(images[..., 0], np.stack([inside, inside]))
    assert [e.source_index for e in errors] == [1, 2, 3, 5, 6]
    root = os.path.realpath(manifest.parent)
    for e, line in zip(errors, [3, 4, 5, 7, 8]):
        assert e.reason.startswith(f"line {line}: path ")
        assert f"outside the manifest's folder {root}; not opened" in e.reason
        assert "--allow-outside-root" in e.reason
    assert "leads to /etc/passwd" in errors[3].reason
    assert str(manifest.parent.parent / "outside" / "secret.png") in errors[2].reason  # symlink


def test_manifest_paths_outside_are_read_when_allowed(escaping_manifest):
    manifest, inside, secret = escaping_manifest
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:6]) + "\n")  # without the /etc rows
    src = open_source(manifest, image_size=6, channels=1, allow_outside_root=True)
    indices, images, errors = collect(src)
    assert indices.tolist() == [0, 1, 2, 3, 4] and errors == []
    np.testing.assert_array_equal(
        images[..., 0], np.stack([inside, secret, secret, secret, inside])
    )


def test_a_manifest_reached_through_a_symlinked_folder_reads_its_own_rows(escaping_manifest):
    manifest, inside, _ = escaping_manifest
    alias = manifest.parent.parent / "alias"
    alias.symlink_to(manifest.parent, target_is_directory=True)
    indices, _, errors = collect(open_source(alias / "m.csv", image_size=6, channels=1))
    assert indices.tolist() == [0, 4] and [e.source_index for e in errors] == [1, 2, 3, 5, 6]


def test_a_refused_first_row_is_not_the_size_reference(tmp_path):
    save_png(tmp_path / "outside.png", np.zeros((9, 9), np.uint8))
    save_png(tmp_path / "data" / "in.png", np.full((4, 5), 3, np.uint8))
    (tmp_path / "data" / "m.jsonl").write_text(
        json.dumps({"path": "../outside.png"}) + "\n" + json.dumps({"path": "in.png"}) + "\n"
    )
    src = open_source(tmp_path / "data" / "m.jsonl")
    assert src.image_shape == (4, 5, 1)
    indices, images, errors = collect(src)
    assert indices.tolist() == [1] and errors[0].reason.startswith("line 1: path '../outside.png'")


# --------------------------------------------------------------------------- malformed arrays


def test_an_object_npy_is_one_value_error_naming_the_file(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy: the \.npy array is an object array"):
        open_source(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", x=np.array([[1], [2]], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz: 'x' is an object array"):
        open_source(tmp_path / "obj.npz")


def test_non_numeric_images_are_one_value_error_naming_the_file(tmp_path):
    np.save(tmp_path / "s.npy", np.full((2, 3, 3), "a"))
    with pytest.raises(ValueError, match=r"s\.npy: images must be numeric"):
        open_source(tmp_path / "s.npy")


def test_flat_785_columns_is_one_value_error_naming_the_file(tmp_path):
    np.save(tmp_path / "mnist.npy", np.zeros((10, 785), np.float32))  # label column left in
    for size in (None, (28, 28)):
        with pytest.raises(ValueError, match=r"mnist\.npy: flat images \(N, 785\) are not square"):
            open_source(tmp_path / "mnist.npy", image_size=size)


def test_150_labels_for_200_images_is_one_value_error_naming_the_files(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((200, 4, 4), np.uint8))
    np.save(tmp_path / "y.npy", np.zeros(150, np.int64))
    with pytest.raises(ValueError, match=r"y\.npy: 150 labels.*200 images"):
        open_source(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    np.savez(tmp_path / "xy.npz", x=np.zeros((200, 4, 4), np.uint8), y=np.zeros(150, np.int64))
    with pytest.raises(ValueError, match=r"xy\.npz: 'y' has 150 entries but there are 200 images"):
        open_source(tmp_path / "xy.npz")


def test_labels_that_are_not_integers_are_value_errors(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"row 1: label 1\.5 is not an integer"):
        open_source(tmp_path / "x.npy", labels=np.array([0.0, 1.5]))
    with pytest.raises(ValueError, match=r"row 0: label True is a boolean"):
        open_source(tmp_path / "x.npy", labels=[True, 1])
    (tmp_path / "m.json").write_text('["a.png"]')
    with pytest.raises(ValueError, match=r"m\.json: item 1: expected an object"):
        open_source(tmp_path / "m.json")


# --------------------------------------------------------------------------- plumbing


def test_open_for_model_passes_the_options_on(tmp_path, escaping_manifest):
    spec = PreprocessingSpec(height=6, width=6, channels=1, class_names=("a",))
    np.save(tmp_path / "small.npy", np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"small\.npy: images are 3x3 .* is 6x6"):
        open_for_model(tmp_path / "small.npy", spec)
    assert open_for_model(tmp_path / "small.npy", spec, resize=True).image_shape == (6, 6, 1)

    manifest, _, _ = escaping_manifest
    _, _, errors = collect(open_for_model(manifest, spec, max_pixels=35))
    assert [e.source_index for e in errors] == [0, 1, 2, 3, 4, 5, 6]  # 36 pixels > 35
    assert "exceeds" in errors[0].reason and "outside" in errors[1].reason
    refused = collect(open_for_model(manifest, spec))[2]
    allowed = collect(open_for_model(manifest, spec, allow_outside_root=True))[2]
    assert [e.source_index for e in refused] == [1, 2, 3, 5, 6]
    assert [e.source_index for e in allowed] == [5, 6]  # /etc files: opened, not images
    assert all("outside" not in e.reason for e in allowed)

    stored = {"resize": True, "max_pixels": None, "allow_outside_root": False, "seed": 0}
    assert read_options(stored) == {"resize": True, "allow_outside_root": False}
    assert read_options({"seed": 0}) == {}


@pytest.mark.slow
def test_hardcase_mine_refuses_then_resizes_and_reports_nan_rows(tmp_path, demo_model_path, capsys):
    from hardcase.review_app.cli import main

    rng = np.random.default_rng(4)
    small = tmp_path / "small.npz"
    np.savez(small, x=rng.integers(0, 256, (20, 5, 5), dtype=np.uint8), y=np.arange(20) % 10)
    db = f"sqlite:///{tmp_path / 'h.db'}"
    common = [
        "--model",
        str(demo_model_path),
        "--db",
        db,
        "--per-class",
        "1",
        "--no-suggest",
        "--quiet",
    ]
    assert main(["mine", "--data", str(small), "--run", "refused", *common]) == 2
    err = capsys.readouterr().err
    assert f"{small}: images are 5x5 (HxW)" in err and "28x28" in err and "--resize" in err

    assert main(["mine", "--data", str(small), "--run", "resized", "--resize", *common]) == 0
    assert "20 scored + 0 errors = 20 samples" in capsys.readouterr().out

    faulty = tmp_path / "faulty.npz"
    x = (rng.random((20, 28, 28)) * 255).astype(np.float32)
    x[3, 0, 0], x[7, 5, 5] = np.nan, np.inf
    np.savez(faulty, x=x, y=np.arange(20) % 10)
    assert main(["mine", "--data", str(faulty), "--run", "faulty", *common]) == 0
    assert "18 scored + 2 errors = 20 samples" in capsys.readouterr().out
