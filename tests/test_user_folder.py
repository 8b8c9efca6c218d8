"""Your own data: `data.user_folder` (listing, classes, split, decode, norm).

Folders are generated in tmp: small images of several formats and modes,
and .npy band tiles. Offline, no TensorFlow except the tf.data test.
"""
import numpy as np
import pytest
from PIL import Image

from remotetrimmer_tf.data import user_folder as uf


def _folder(root, classes=("b_cls", "a_cls", "c_cls"), n=6, size=20, fmt="png",
            mode="RGB"):
    rng = np.random.default_rng(0)
    for i, cls in enumerate(classes):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            arr = (rng.random((size, size, 3)) * 40 + 60 * i).astype(np.uint8)
            Image.fromarray(arr).convert(mode).save(d / f"{cls}_{k}.{fmt}")
    return root


def test_classes_are_sorted_subfolders_and_labels_follow(tmp_path):
    _folder(tmp_path)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "a_cls" / "notes.txt").write_text("ignored")
    src = uf.open_folder(tmp_path)
    assert src.class_names == ("a_cls", "b_cls", "c_cls")
    assert src.kind == "image" and src.channels == 3
    assert len(src.files) == 18
    files, labels = uf.split(src, "train", seed=0)
    assert all(src.class_names[lab] == f.split("/")[0]
               for f, lab in zip(files, labels))


def test_given_classes_set_order_and_subset(tmp_path):
    _folder(tmp_path)
    src = uf.open_folder(tmp_path, classes="c_cls,a_cls")
    assert src.class_names == ("c_cls", "a_cls")
    assert {f.split("/")[0] for f in src.files} == {"c_cls", "a_cls"}
    _, labels = uf.split(src, "test")
    assert set(labels.tolist()) == {0, 1}


def test_split_is_seeded_stratified_and_disjoint(tmp_path):
    _folder(tmp_path, n=10)
    src = uf.open_folder(tmp_path)
    parts = {s: uf.split(src, s, seed=3, train_fraction=0.7, val_fraction=0.2)[0]
             for s in ("train", "val", "test")}
    assert sum(map(len, parts.values())) == 30
    assert not set(parts["train"]) & set(parts["test"])
    assert not set(parts["val"]) & set(parts["train"])
    for cls in src.class_names:
        assert sum(f.startswith(cls) for f in parts["test"]) == 3
    again = uf.split(src, "train", seed=3, train_fraction=0.7, val_fraction=0.2)[0]
    assert again == parts["train"]
    other = uf.split(src, "train", seed=4, train_fraction=0.7, val_fraction=0.2)[0]
    assert other != parts["train"]


@pytest.mark.parametrize("mode,fmt", [("L", "png"), ("RGBA", "png"),
                                      ("RGB", "bmp"), ("RGB", "tif"),
                                      ("P", "png"), ("RGB", "jpg")])
def test_modes_and_formats_decode_to_rgb(tmp_path, mode, fmt):
    _folder(tmp_path, classes=("x", "y"), n=3, mode=mode, fmt=fmt)
    src = uf.open_folder(tmp_path)
    x = uf.decode(src, src.files[:2], image_size=16)
    assert x.shape == (2, 16, 16, 3) and x.dtype == np.uint8


def test_grayscale_promoted_equal_channels(tmp_path):
    _folder(tmp_path, classes=("x", "y"), n=2, mode="L")
    src = uf.open_folder(tmp_path)
    x = uf.decode(src, src.files, image_size=20)
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2])


def test_mixed_sizes_are_resized(tmp_path):
    _folder(tmp_path, classes=("x", "y"), n=3, size=20)
    Image.fromarray(np.zeros((37, 23, 3), np.uint8)).save(tmp_path / "x" / "odd.png")
    src = uf.open_folder(tmp_path)
    assert uf.decode(src, src.files, image_size=12).shape == (7, 12, 12, 3)


def test_one_class_is_refused(tmp_path):
    _folder(tmp_path, classes=("only",))
    with pytest.raises(uf.UserDataError, match="at least two classes"):
        uf.open_folder(tmp_path)


def test_missing_given_class_is_named(tmp_path):
    _folder(tmp_path)
    with pytest.raises(uf.UserDataError, match="nope"):
        uf.open_folder(tmp_path, classes="a_cls,nope")


def test_empty_class_folder_is_named(tmp_path):
    _folder(tmp_path)
    (tmp_path / "d_empty").mkdir()
    with pytest.raises(uf.UserDataError, match="d_empty"):
        uf.open_folder(tmp_path)


def test_class_too_small_for_split_is_named(tmp_path):
    _folder(tmp_path, n=5)
    for p in list((tmp_path / "b_cls").iterdir())[1:]:
        p.unlink()
    src = uf.open_folder(tmp_path)
    with pytest.raises(uf.UserDataError, match="'b_cls' has 1 image"):
        uf.split(src, "train")
    # val needs a third image per class
    _folder(tmp_path / "two", n=2)
    src2 = uf.open_folder(tmp_path / "two")
    uf.split(src2, "train")
    with pytest.raises(uf.UserDataError, match="at least 3"):
        uf.split(src2, "train", val_fraction=0.2)


def test_unreadable_file_is_named(tmp_path):
    _folder(tmp_path)
    (tmp_path / "a_cls" / "broken.jpg").write_bytes(b"not an image at all")
    with pytest.raises(uf.UserDataError, match="broken.jpg.*unreadable"):
        uf.open_folder(tmp_path)


def test_npy_band_tiles(tmp_path):
    rng = np.random.default_rng(1)
    for i, cls in enumerate(("p", "q")):
        (tmp_path / cls).mkdir()
        for k in range(5):
            np.save(tmp_path / cls / f"t{k}.npy",
                    (rng.random((10, 12, 6)) * 1000 + 500 * i).astype(np.uint16))
    src = uf.open_folder(tmp_path)
    assert src.kind == "array" and src.channels == 6
    files, _ = uf.split(src, "train")
    mean, std = uf.measure_normalization(src, files, image_size=8)
    assert len(mean) == 6 and len(std) == 6
    x, y = uf.load_numpy(src, "train", image_size=8, norm=(mean, std))
    assert x.shape == (len(files), 8, 8, 6) and x.dtype == np.float32
    assert np.allclose(x.mean(axis=(0, 1, 2)), 0, atol=0.1)


def test_mixed_band_counts_are_named(tmp_path):
    for cls, bands in (("p", 4), ("q", 5)):
        (tmp_path / cls).mkdir()
        for k in range(3):
            np.save(tmp_path / cls / f"t{k}.npy", np.zeros((8, 8, bands), np.float32))
    with pytest.raises(uf.UserDataError, match="5-band.*4-band"):
        uf.open_folder(tmp_path)


def test_images_and_arrays_mixed_are_named(tmp_path):
    _folder(tmp_path, classes=("x", "y"), n=3)
    np.save(tmp_path / "y" / "extra.npy", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(uf.UserDataError, match="one kind of file"):
        uf.open_folder(tmp_path)


def test_measured_normalisation_matches_numpy(tmp_path):
    _folder(tmp_path, n=4)
    src = uf.open_folder(tmp_path)
    files, _ = uf.split(src, "train")
    mean, std = uf.measure_normalization(src, files, image_size=20)
    raw = uf.decode(src, files, 20).astype(np.float64) / 255.0
    assert np.allclose(mean, raw.mean(axis=(0, 1, 2)), atol=1e-6)
    assert np.allclose(std, raw.std(axis=(0, 1, 2)), atol=1e-6)


def test_tf_data_matches_numpy_path(tmp_path):
    _folder(tmp_path, n=4)
    src = uf.open_folder(tmp_path)
    norm = ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    x_np, y_np = uf.load_numpy(src, "test", image_size=20, norm=norm)
    ds = uf.load(src, "test", image_size=20, norm=norm, batch_size=4,
                 shuffle=False)
    xs, ys = zip(*[(np.asarray(a), np.asarray(b)) for a, b in ds])
    assert ds.num_examples == len(y_np) and ds.class_names == list(src.class_names)
    assert np.array_equal(np.concatenate(ys), y_np)
    assert np.allclose(np.concatenate(xs), x_np, atol=1e-4)


# ------------------------------------------------------ multi-band GeoTIFF
def _write_multiband_tiff(path, arr):
    """A minimal baseline TIFF (uint16, N samples per pixel, one strip),
    written by hand so no TIFF package is needed to make one."""
    import struct
    h, w, n = arr.shape
    data = np.ascontiguousarray(arr.astype("<u2")).tobytes()
    entries = []          # (tag, type, count, value or bytes)
    shorts = lambda vals: struct.pack(f"<{len(vals)}H", *vals)  # noqa: E731
    entries += [(256, 4, 1, w), (257, 4, 1, h), (258, 3, n, shorts([16] * n)),
                (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, None),
                (277, 3, 1, n), (278, 4, 1, h), (279, 4, 1, len(data)),
                (284, 3, 1, 1), (338, 3, n - 1, shorts([0] * (n - 1))),
                (339, 3, n, shorts([1] * n))]
    ifd_size = 2 + 12 * len(entries) + 4
    extra_at = 8 + ifd_size
    extra = b""
    packed = []
    for tag, typ, count, value in entries:
        if isinstance(value, bytes) and len(value) > 4:
            packed.append((tag, typ, count, struct.pack("<I", extra_at + len(extra))))
            extra += value + (b"\0" if len(value) % 2 else b"")
        elif isinstance(value, bytes):
            packed.append((tag, typ, count, value.ljust(4, b"\0")))
        else:
            packed.append((tag, typ, count, value))
    data_at = extra_at + len(extra)
    out = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", len(packed))
    for tag, typ, count, value in packed:
        if value is None:
            value = data_at
        if isinstance(value, int):
            value = struct.pack("<I", value) if typ == 4 else struct.pack("<HH", value, 0)
        out += struct.pack("<HHI", tag, typ, count) + value
    out += struct.pack("<I", 0) + extra + data
    path.write_bytes(out)


def _tiff_folder(root, bands=5):
    rng = np.random.default_rng(5)
    for i, cls in enumerate(("crops", "water")):
        (root / cls).mkdir(parents=True)
        for k in range(3):
            arr = (rng.random((9, 11, bands)) * 1000 + 3000 * i).astype(np.uint16)
            _write_multiband_tiff(root / cls / f"t{k}.tif", arr)
    return root


def test_multiband_tiff_without_a_reader_says_what_to_install(tmp_path, monkeypatch):
    _tiff_folder(tmp_path)
    monkeypatch.setattr(uf, "tiff_reader_available", lambda: False)
    with pytest.raises(uf.UserDataError) as err:
        uf.open_folder(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "t0.tif" in msg and "pip install tifffile" in msg


def test_multiband_tiff_with_tifffile_reads_every_band(tmp_path):
    pytest.importorskip("tifffile")
    _tiff_folder(tmp_path, bands=5)
    known = (np.arange(9 * 9 * 5).reshape(9, 9, 5) * 7).astype(np.uint16)
    _write_multiband_tiff(tmp_path / "water" / "known.tif", known)
    src = uf.open_folder(tmp_path)
    assert src.kind == "array" and src.channels == 5
    got = uf.read_array(tmp_path / "water" / "known.tif", 9)
    assert np.array_equal(got, known.astype(np.float32))
    x, y = uf.load_numpy(src, "train", image_size=6, norm=None)
    assert x.shape[1:] == (6, 6, 5) and set(y.tolist()) == {0, 1}


def test_npy_band_tiles_of_mixed_sizes_are_resized(tmp_path):
    rng = np.random.default_rng(2)
    for cls in ("p", "q"):
        (tmp_path / cls).mkdir()
        for k, (h, w) in enumerate(((8, 8), (10, 7), (12, 12))):
            np.save(tmp_path / cls / f"t{k}.npy", rng.random((h, w, 7)).astype(np.float32))
    src = uf.open_folder(tmp_path)
    assert src.channels == 7
    assert uf.decode(src, src.files, image_size=6).shape == (6, 6, 6, 7)
