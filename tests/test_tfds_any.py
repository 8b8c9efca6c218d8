"""``--config.data.name=tfds:<builder>`` (`data.tfds_any`), offline.

Local builders (tests/tfds_tiny_builders.py) stand in for resisc45 & co:
one prepared from a manual folder, one that would download. Nothing here
reaches the network: downloads happen only when asked, and the tests check
that without ``download`` no connection is even attempted.
"""
import shutil
import socket

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import tfds_tiny_builders as tiny  # noqa: E402  (registers the builders)
from remotetrimmer_tf.data import tfds_any  # noqa: E402
from remotetrimmer_tf.data.user_folder import UserDataError  # noqa: E402
from helpers import REPO, bad_exit, cli  # noqa: E402


@pytest.fixture
def no_sockets(monkeypatch):
    """Any real connection attempt fails the test."""
    calls = []

    def connect(*a, **k):
        calls.append(a)
        raise AssertionError(f"network attempted: {a[1:] or k}")
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(socket, "getaddrinfo", connect)
    return calls


def test_manual_builder_prepared_pooled_and_split(tmp_path):
    manual = tiny.write_manual_folder(tmp_path / "manual")
    src = tfds_any.open_builder("tfds:rt_tiny_manual_scenes", manual_dir=manual,
                                tfds_data_dir=str(tmp_path / "tfds"))
    assert src.class_names == tiny.CLASSES and src.num_classes == 3
    assert len(src.keys) == 3 * tiny.PER_CLASS          # train + test pooled
    parts = {s: set(tfds_any.split_indices(src, s, seed=1).tolist())
             for s in ("train", "test")}
    assert not parts["train"] & parts["test"]
    assert len(parts["train"]) + len(parts["test"]) == len(src.keys)
    ds = tfds_any.load(src, "test", image_size=8, norm=None, batch_size=4,
                       shuffle=False, seed=1)
    xs, ys = zip(*[(np.asarray(a), np.asarray(b)) for a, b in ds])
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert x.shape == (len(parts["test"]), 8, 8, 3)
    assert sorted(np.bincount(y).tolist()) == [len(parts["test"]) // 3] * 3
    # class i was drawn around 70 * i: labels follow the images
    for lab in range(3):
        assert abs(x[y == lab].mean() - (20 + 70 * lab)) < 8
    # prepared once: a second open neither prepares nor needs the manual dir
    shutil.rmtree(manual)
    again = tfds_any.open_builder("rt_tiny_manual_scenes",
                                  tfds_data_dir=str(tmp_path / "tfds"))
    assert again.keys == src.keys


def test_not_prepared_without_download_says_how_and_stays_offline(
        tmp_path, no_sockets, monkeypatch):
    def no_prepare(*a, **k):
        raise AssertionError("download_and_prepare called without download=True")
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                        no_prepare)
    with pytest.raises(UserDataError) as err:
        tfds_any.open_builder("tfds:rt_tiny_download_scenes",
                              tfds_data_dir=str(tmp_path / "tfds"))
    msg = str(err.value)
    assert "\n" not in msg and "not prepared" in msg
    assert "--config.data.download=True" in msg and "--config.data.data_dir" in msg
    assert not no_sockets


def test_manual_dir_that_needs_a_download_refuses_the_network(tmp_path, no_sockets):
    (tmp_path / "manual").mkdir()
    with pytest.raises(UserDataError) as err:
        tfds_any.open_builder("tfds:rt_tiny_download_scenes",
                              manual_dir=tmp_path / "manual",
                              tfds_data_dir=str(tmp_path / "tfds"))
    msg = str(err.value)
    assert "needs to download" in msg and "--config.data.download=True" in msg
    assert not no_sockets          # refused by tfds_any, never reached socket


def test_no_network_guard_restores_sockets():
    before = (socket.socket.connect, socket.create_connection, socket.getaddrinfo)
    with tfds_any.no_network() as attempts:
        with pytest.raises(tfds_any.NetworkRefused):
            socket.create_connection(("127.0.0.1", 9))
        with pytest.raises(tfds_any.NetworkRefused):
            socket.getaddrinfo("example.com", 80)
    assert len(attempts) == 2
    assert (socket.socket.connect, socket.create_connection,
            socket.getaddrinfo) == before


def test_not_a_classification_builder(tmp_path):
    with pytest.raises(UserDataError, match="ClassLabel"):
        tfds_any.open_builder("tfds:rt_tiny_captions",
                              tfds_data_dir=str(tmp_path / "tfds"))


def test_unknown_builder_did_you_mean(tmp_path):
    with pytest.raises(UserDataError, match="did you mean tfds:resisc45"):
        tfds_any.open_builder("tfds:resisc54", tfds_data_dir=str(tmp_path))


def test_pipeline_bridge_loads_a_tfds_split(tmp_path, monkeypatch):
    from remotetrimmer_tf.pipeline import config_base, user_data
    from remotetrimmer_tf.pipeline.workdir import Workdir
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    cfg = config_base().get_config()
    cfg.data.name = "tfds:rt_tiny_manual_scenes"
    cfg.data.data_dir = str(tiny.write_manual_folder(tmp_path / "manual"))
    cfg.data.image_size = 8
    monkeypatch.setattr(user_data, "_SOURCES", {})
    info = user_data.describe(cfg)
    assert info["num_classes"] == 3 and info["num_images"] == 18
    assert info["class_names"] == list(tiny.CLASSES)
    wd = Workdir(tmp_path / "run")
    ds = user_data.load_split(cfg, "train", 4, False, wd)
    assert wd.exists(user_data.NORM_FILE)
    x, _ = next(iter(ds))
    assert tuple(x.shape[1:]) == (8, 8, 3)


@pytest.mark.slow
def test_cli_tfds_not_prepared_is_one_line(tmp_path, monkeypatch):
    shutil.copy(REPO / "tests" / "tfds_tiny_builders.py", tmp_path)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    proc = cli("--config.data.name=tfds:rt_tiny_download_scenes",
               "--custom_objects=tfds_tiny_builders",
               f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    bad_exit(proc, "tfds:rt_tiny_download_scenes", "--config.data.download=True")
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
