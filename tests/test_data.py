"""Tests for remotetrimmer_tf.data: registry, splits, folder/TFDS/numpy loaders.

Offline and fast: images are generated in tmp_path, the TFDS path runs under
``tfds.testing.mock_data``. Only the clearly-marked ``test_shared_data_counts``
looks at ../shared/data (file listing only; skipped when absent).
"""
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image

from remotetrimmer_tf import data
from remotetrimmer_tf.data import registry, splits

REPO = pathlib.Path(__file__).resolve().parents[1]
EURO = registry.EUROSAT
UCM = registry.UC_MERCED


def _colour(label, i):
    """A constant RGB colour identifying (class, image)."""
    return (10 + 20 * (label % 12), 5 + 7 * i, 250 - 11 * (label % 20))


def make_folder(base, spec, per_class=10, size=(64, 64), ext=".png", sizes=None,
                nested=True):
    """Writes <base>/<root>/<image_folder>/<class>/<class>_<i><ext> constant images."""
    root = pathlib.Path(base)
    if nested:
        root = root / spec.root_names[0] / spec.image_folder
    for label, cls in enumerate(spec.class_names):
        d = root / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            s = sizes[i % len(sizes)] if sizes else size
            img = Image.new("RGB", s, _colour(label, i))
            img.save(d / f"{cls}_{i}{ext}")
    return root


# ---------------------------------------------------------------- registry
def test_registry_specs_and_info():
    assert data.num_classes("eurosat") == 10
    assert data.num_classes("uc_merced") == 21
    assert data.get_spec("eurosat/rgb") is EURO and data.get_spec("UCMerced") is UCM
    inf = data.info("eurosat")
    assert inf["image_size"] == 64 and inf["tfds_name"] == "eurosat/rgb"
    assert inf["mean"] == [0.408, 0.380, 0.340] and inf["std"] == [0.116, 0.137, 0.203]
    assert data.info("uc_merced")["image_size"] == 256
    assert data.class_names("eurosat")[0] == "AnnualCrop"
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        data.get_spec("mnist")
    with pytest.raises(ValueError, match="normalize"):
        registry.resolve_normalization(EURO, "bogus")
    assert registry.resolve_normalization(EURO, False) is None
    m, s = registry.resolve_normalization(EURO, "measured")
    assert m == EURO.measured_mean and s == EURO.measured_std


# ---------------------------------------------------------------- splits
def _eurosat_like_files():
    sizes = dict(zip(EURO.class_names, [3000, 3000, 3000, 2500, 2500, 2000, 2500,
                                         3000, 2500, 3000]))
    return [f"{c}/{c}_{i}.jpg" for c, n in sizes.items() for i in range(1, n + 1)], sizes


def test_split_exact_counts_stratified_disjoint():
    files, sizes = _eurosat_like_files()
    s = data.split_files(files, seed=0)
    assert (len(s["train"]), len(s["test"]), len(s["val"])) == (18900, 8100, 0)
    assert not set(s["train"]) & set(s["test"])
    assert sorted(s["train"] + s["test"]) == sorted(files)
    for c, n in sizes.items():
        assert sum(f.startswith(c + "/") for f in s["train"]) == round(0.7 * n)
        assert sum(f.startswith(c + "/") for f in s["test"]) == n - round(0.7 * n)
    ucm = [f"{c}/{c}{i:02d}.tif" for c in UCM.class_names for i in range(100)]
    su = data.split_files(ucm, seed=0)
    assert (len(su["train"]), len(su["test"])) == (1470, 630)


def test_split_golden_fingerprints():
    """Pins the protocol: these names are EuroSAT's, so this is the real split."""
    files, _ = _eurosat_like_files()
    s = data.split_files(files, seed=0)
    assert data.split_fingerprint(s["train"]) == "5b868d080fc90824"
    assert data.split_fingerprint(s["test"]) == "4757bcad4eee11cb"
    assert s["test"][:3] == ["AnnualCrop/AnnualCrop_100.jpg",
                             "AnnualCrop/AnnualCrop_1003.jpg",
                             "AnnualCrop/AnnualCrop_1006.jpg"]


def test_split_deterministic_order_free_seeded():
    files, _ = _eurosat_like_files()
    files = files[::7]  # smaller, odd class sizes
    a = data.split_files(files, seed=3)
    rev = data.split_files(list(reversed(files)), seed=3)
    assert a == rev  # input order does not matter
    assert data.split_files(files, seed=4)["train"] != a["train"]
    # extension independent: the TIFF TFDS names split like the JPEG folder
    tif = data.split_files([f.replace(".jpg", ".tif") for f in files], seed=3)
    assert [f.replace(".tif", ".jpg") for f in tif["train"]] == a["train"]
    # a class's split does not depend on the other classes
    only = [f for f in files if f.startswith("Forest/")]
    assert data.split_files(only, seed=3)["train"] == [
        f for f in a["train"] if f.startswith("Forest/")]
    assert data.split_fingerprint(a["test"]) == data.split_fingerprint(rev["test"])


def test_split_validation_carve_out():
    files = [f"{c}/{i}.jpg" for c in "ABC" for i in range(100)]
    base = data.split_files(files, seed=0)
    v = data.split_files(files, seed=0, val_fraction=0.1)
    assert v["test"] == base["test"]
    assert len(v["val"]) == 21 and len(v["train"]) == 189
    assert sorted(v["train"] + v["val"]) == sorted(base["train"])
    assert not set(v["train"]) & set(v["val"])


def test_split_every_class_in_both_and_errors():
    s = data.split_files(["A/1.jpg", "A/2.jpg", "B/1.jpg", "B/2.jpg", "B/3.jpg"])
    for part in ("train", "test"):
        assert {f[0] for f in s[part]} == {"A", "B"}
    with pytest.raises(ValueError, match="split key"):
        data.split_files(["A/1.jpg", "A/1.png"])
    with pytest.raises(ValueError, match="train_fraction"):
        data.split_files(["A/1.jpg"], train_fraction=1.0)
    with pytest.raises(ValueError, match="class>/<file"):
        data.split_files(["nofolder.jpg"])
    with pytest.raises(ValueError, match="unknown split"):
        splits.normalize_split("dev")


# ---------------------------------------------------------------- folder
def test_find_root_layouts_and_listing(tmp_path):
    root = make_folder(tmp_path, EURO, per_class=3)
    for d in (tmp_path, tmp_path / "eurosat", root):
        assert data.find_root("eurosat", d) == root
    files = data.list_files("eurosat", root)
    assert len(files) == 30 and files == sorted(files)
    (root / "Clouds").mkdir()
    with pytest.raises(ValueError, match="Clouds"):
        data.list_files("eurosat", root)
    (root / "Clouds").rmdir()
    for f in (root / "River").iterdir():
        f.unlink()
    (root / "River").rmdir()
    with pytest.raises(ValueError, match="River"):
        data.list_files("eurosat", root)


def test_env_var_lookup(tmp_path, monkeypatch):
    make_folder(tmp_path, UCM, per_class=2, size=(8, 8))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert data.find_root("uc_merced") == tmp_path / "ucmerced" / "Images"


def test_missing_dataset_message(tmp_path):
    where = tmp_path / "nothing_here"
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_numpy("uc_merced", "train", data_dir=where)
    msg = str(err.value)
    assert "'uc_merced'" in msg and str(where) in msg
    assert "download=True" in msg and "data_dir=" in msg and "UCMerced_LandUse.zip" in msg
    assert isinstance(err.value, FileNotFoundError)


# ---------------------------------------------------------------- tf.data path
def _collect(ds):
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def test_load_folder_tf_matches_numpy_and_normalises(tmp_path):
    make_folder(tmp_path, EURO, per_class=10)
    ds = data.load("eurosat", "test", data_dir=tmp_path, batch_size=8)
    assert ds.num_examples == 30 and ds.class_names == list(EURO.class_names)
    x, y = _collect(ds)
    assert x.shape == (30, 64, 64, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert np.bincount(y, minlength=10).tolist() == [3] * 10
    xn, yn, files = data.load_numpy("eurosat", "test", data_dir=tmp_path,
                                    return_files=True)
    np.testing.assert_array_equal(yn, y)  # test split is not shuffled: same order
    np.testing.assert_allclose(x, xn, atol=1e-5)
    # numeric check of the normalisation on the constant images
    for k, f in enumerate(files):
        label, i = EURO.class_names.index(f.split("/")[0]), int(f.split("_")[-1][:-4])
        want = (np.array(_colour(label, i)) / 255.0 - np.array(EURO.mean)) / np.array(EURO.std)
        np.testing.assert_allclose(x[k, 5, 7], want, rtol=1e-5, atol=1e-5)
    raw, _ = data.load_numpy("eurosat", "test", data_dir=tmp_path, normalize=False)
    assert raw.dtype == np.uint8
    np.testing.assert_allclose(data.normalize_numpy(raw, "eurosat"), xn, atol=1e-6)


def test_load_train_shuffle_deterministic_and_reshuffled(tmp_path):
    make_folder(tmp_path, EURO, per_class=10, size=(8, 8))
    kw = dict(data_dir=tmp_path, batch_size=16, image_size=8, seed=5)
    ds = data.load("eurosat", "train", **kw)
    e1 = _collect(ds)[1]
    e2 = _collect(ds)[1]
    again = _collect(data.load("eurosat", "train", **kw))[1]
    assert len(e1) == 70 and sorted(e1) == sorted(e2)
    np.testing.assert_array_equal(e1, again)  # same order on every run
    assert (e1 != e2).any()  # reshuffled each epoch
    assert (e1 != np.sort(e1)).any()
    val = data.load("eurosat", "val", val_fraction=0.2, **kw)
    assert val.num_examples == 10 * 1  # 7 train per class -> round(1.4) = 1
    drop = data.load("eurosat", "train", drop_remainder=True, **kw)
    assert sum(1 for _ in drop) == 70 // 16


def test_uc_merced_variable_sizes_and_tiff(tmp_path):
    sizes = [(20, 20), (18, 21), (22, 19)]
    make_folder(tmp_path, UCM, per_class=4, sizes=sizes, ext=".tif")
    ds = data.load("uc_merced", "train", data_dir=tmp_path, image_size=16,
                   batch_size=32, normalize=False, shuffle=False)
    x, y = _collect(ds)
    assert x.shape == (21 * 3, 16, 16, 3) and ds.num_examples == 63
    xn, yn = data.load_numpy("uc_merced", "train", data_dir=tmp_path, image_size=16,
                             normalize=False)
    np.testing.assert_array_equal(y, yn)
    # constant images stay constant through either resize
    np.testing.assert_allclose(x, xn.astype(np.float32), atol=1.0)
    with pytest.raises(ValueError, match="image_size"):
        data.load("uc_merced", "train", data_dir=tmp_path, image_size=0)


def test_numpy_batches():
    x = np.arange(10 * 2 * 2 * 3, dtype=np.uint8).reshape(10, 2, 2, 3)
    y = np.arange(10, dtype=np.int32)
    plain = list(data.numpy_batches(x, y, 4))
    assert [len(b[1]) for b in plain] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in plain]), y)
    e0 = np.concatenate([b[1] for b in data.numpy_batches(x, y, 4, shuffle=True, seed=1)])
    e1 = np.concatenate([b[1] for b in data.numpy_batches(x, y, 4, shuffle=True, seed=1,
                                                          epoch=1)])
    assert sorted(e0) == list(range(10)) and (e0 != e1).any()
    for xb, yb in data.numpy_batches(x, y, 3, shuffle=True, drop_remainder=True,
                                     normalize=((0.5,) * 3, (0.25,) * 3)):
        assert len(yb) == 3 and xb.dtype == np.float32
        np.testing.assert_allclose(xb, (x[yb] / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)


def test_load_numpy_never_imports_tensorflow(tmp_path):
    make_folder(tmp_path, EURO, per_class=2, size=(8, 8), ext=".jpg")
    code = ("import sys; from remotetrimmer_tf import data; "
            f"x, y = data.load_numpy('eurosat', 'all', data_dir={str(tmp_path)!r}, "
            "image_size=8); assert x.shape == (20, 8, 8, 3), x.shape; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


# ---------------------------------------------------------------- TFDS path
def test_tfds_mock_split_counts():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=40):
        tr = data.load("eurosat", "train", source="tfds", batch_size=16, image_size=16)
        te = data.load("eurosat", "test", source="tfds", batch_size=16, image_size=16)
        xtr, ytr = _collect(tr)
        _, yte = _collect(te)
    assert tr.num_examples + te.num_examples == 40
    assert len(ytr) == tr.num_examples and len(yte) == te.num_examples
    assert xtr.shape[1:] == (16, 16, 3) and xtr.dtype == np.float32


def test_tfds_path_equals_folder_path(tmp_path):
    """TFDS records with the folder's files select and decode the same images."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tensorflow as tf

    root = make_folder(tmp_path, EURO, per_class=6, size=(64, 64))
    files = data.list_files("eurosat", root)
    records = {
        "image": [(root / f).read_bytes() for f in files],
        "label": [EURO.class_names.index(f.split("/")[0]) for f in files],
        "filename": [f.split("/")[1] for f in files],  # TFDS keeps the basename
    }

    def as_dataset_fn(self, *args, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {k: tf.constant(v, tf.int64 if k == "label" else tf.string)
             for k, v in records.items()})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset_fn):
        x_t, y_t = _collect(data.load("eurosat", "test", source="tfds",
                                      shuffle=False, batch_size=64))
    x_f, y_f = _collect(data.load("eurosat", "test", data_dir=tmp_path,
                                  shuffle=False, batch_size=64))
    order_t, order_f = np.lexsort((x_t[:, 0, 0, 1], y_t)), np.lexsort((x_f[:, 0, 0, 1], y_f))
    np.testing.assert_array_equal(y_t[order_t], y_f[order_f])
    np.testing.assert_allclose(x_t[order_t], x_f[order_f], atol=1e-6)
    assert len(y_t) == 10 * 2  # round(0.3 * 6) ... 6 - round(4.2) = 2 per class


def test_auto_source_routing(tmp_path, monkeypatch):
    """auto: local folder first; else the official zip goes to TFDS as manual_dir."""
    from remotetrimmer_tf.data import api

    zdir = tmp_path / "zips"
    zdir.mkdir()
    (zdir / "EuroSAT.zip").write_bytes(b"not really a zip")
    assert api._pick_source(EURO, "auto", zdir, False, None, None) == ("tfds", zdir)
    assert api._pick_source(EURO, "tfds", zdir, False, None, None) == ("tfds", zdir)
    make_folder(tmp_path / "f", EURO, per_class=2, size=(8, 8))
    assert api._pick_source(EURO, "auto", tmp_path / "f", True, None, None) == (
        "folder", None)
    with pytest.raises(ValueError, match="source must be one of"):
        api._pick_source(EURO, "web", None, False, None, None)
    seen = {}
    tfds = pytest.importorskip("tensorflow_datasets")
    real = tfds.download.DownloadConfig

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(tfds.download, "DownloadConfig", spy)
    with tfds.testing.mock_data(num_examples=20):
        ds = data.load("eurosat", "test", data_dir=zdir, batch_size=8, image_size=8)
    assert seen.get("manual_dir") == os.fspath(zdir) and ds.num_examples > 0


def test_tfds_not_prepared_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load("eurosat", "train", source="tfds", tfds_data_dir=str(tmp_path))
    msg = str(err.value)
    assert "eurosat/rgb" in msg and str(tmp_path) in msg
    assert "download=True" in msg and "manual_dir=" in msg and "EuroSAT.zip" in msg


# ---------------------------------------------------------------- demo sample
def test_demo_sample():
    d = data.sample_dir()
    assert (d / "ATTRIBUTION.md").is_file() and (d / "LICENSE").is_file()
    files = data.list_files("eurosat", data.find_root("eurosat", d))
    assert len(files) == 800
    total = sum(p.stat().st_size for p in (d / "2750").rglob("*.jpg"))
    assert total < 5e6
    _, tr, ytr = data.split_file_list("eurosat", "train", data_dir=d)
    _, te, yte = data.split_file_list("eurosat", "test", data_dir=d)
    assert (len(tr), len(te)) == (560, 240)
    assert np.bincount(ytr).tolist() == [56] * 10 and np.bincount(yte).tolist() == [24] * 10
    x, y = data.load_numpy("eurosat", "test", data_dir=d)
    assert x.shape == (240, 64, 64, 3) and np.isfinite(x).all()


# ------------------------------------------- real data (file listing only)
SHARED = REPO.parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "eurosat" / "2750").is_dir(),
                    reason="../shared/data not present")
def test_shared_data_counts():
    """REAL DATA CHECK (file listing only): the published 70/30 split sizes."""
    for name, want in (("eurosat", (18900, 8100)), ("uc_merced", (1470, 630))):
        spec = data.get_spec(name)
        _, tr, ytr = data.split_file_list(name, "train", data_dir=SHARED)
        _, te, yte = data.split_file_list(name, "test", data_dir=SHARED)
        assert (len(tr), len(te)) == want
        assert not set(tr) & set(te)
        assert (np.bincount(ytr, minlength=spec.num_classes) > 0).all()
        assert (np.bincount(yte, minlength=spec.num_classes) > 0).all()
        _, tr2, _ = data.split_file_list(name, "train", data_dir=SHARED)
        assert tr2 == tr
        assert (data.split_fingerprint(tr), data.split_fingerprint(te)) == {
            "eurosat": ("5b868d080fc90824", "4757bcad4eee11cb"),
            "uc_merced": ("1f7d28a182e307c3", "4ebe5245a9c2f3b0")}[name]
