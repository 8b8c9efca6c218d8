"""The CLI on multispectral GeoTIFF tiles (issue 29): a 13-band model trained,
pruned, fine-tuned and exported (LiteRT + ONNX + SavedModel), band selection,
and the bad inputs of that path (exit 2, one line, nothing written).

Tiles are 16x16, written with tifffile in a temporary folder.
"""
import json

import numpy as np
import pytest

pytest.importorskip("tifffile")

import tifffile  # noqa: E402

from geotiff_tiles import write_tiles  # noqa: E402
from helpers import bad_exit as _bad, cli  # noqa: E402  (the shared test helpers)

FAST = ("--config.data.name=folder", "--config.data.image_size=16",
        "--config.data.batch_size=8", "--config.train.epochs=1",
        "--config.train.batch_size=8", "--config.finetune.epochs=1",
        "--config.finetune.batch_size=8", "--config.prune.ratio=0.5",
        "--config.recalibrate.steps=1", "--config.export.quantize=none",
        "--config.export.check_samples=4", "--verbose=0")


@pytest.mark.slow
def test_13_band_model_end_to_end(tmp_path):
    pytest.importorskip("onnxruntime")
    data = tmp_path / "EuroSAT_MS"
    write_tiles(data, n=6, size=16, bands=13, dtype="uint16")
    wd = tmp_path / "run"
    proc = cli(*FAST, f"--config.data.data_dir={data}",
               "--config.export.formats=litert,onnx,saved_model",
               f"--workdir={wd}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    norm = json.loads((wd / "normalization.json").read_text())
    assert len(norm["mean"]) == 13 and norm["channels"] == 13
    assert norm["scale"] == "raw band values" and norm["bands"] == "all"
    assert min(norm["mean"]) > 100        # raw uint16 reflectances, not /255
    ledger = json.loads((wd / "stages.json").read_text())
    files = ledger["stages"]["export"]["info"]["files"]
    assert set(files) == {"none", "onnx", "tf_saved_model"}
    assert files["onnx"]["max_abs_diff"] <= 1e-3 and files["onnx"]["num_checked"] > 0
    assert (wd / "model.tflite").is_file() and (wd / "model.onnx").is_file()
    assert (wd / "model_saved_model" / "saved_model.pb").is_file()
    import onnxruntime as ort
    s = ort.InferenceSession(str(wd / "model.onnx"), providers=["CPUExecutionProvider"])
    assert s.get_inputs()[0].shape[-1] == 13


@pytest.mark.slow
def test_band_selection_feeds_the_model(tmp_path):
    """--config.data.bands=3,2,1,7: the stages see 4 channels (train only)."""
    data = tmp_path / "d"
    write_tiles(data, n=4, size=16, bands=13)
    wd = tmp_path / "run"
    proc = cli(*FAST, f"--config.data.data_dir={data}", "--config.data.bands=3,2,1,7",
               "--config.model.se=False", "--config.prune.importance=l1",
               "--stages=train", f"--workdir={wd}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    norm = json.loads((wd / "normalization.json").read_text())
    assert norm["bands"] == [3, 2, 1, 7] and len(norm["std"]) == 4
    import keras
    m = keras.saving.load_model(wd / "model_trained.keras", compile=False)
    assert m.inputs[0].shape[-1] == 4


def _odd_band_count(data):
    tifffile.imwrite(data / "water" / "water_odd.tif", np.ones((16, 16, 12), np.uint16))


def _nan_tile(data):
    arr = np.ones((16, 16, 13), np.float32)
    arr[3, 3, 3] = np.nan
    tifffile.imwrite(data / "crops" / "crops_nan.tif", arr)


def _nodata_tile(data):
    arr = np.full((16, 16, 13), -9999, np.int16)
    tifffile.imwrite(data / "crops" / "crops_nodata.tif", arr,
                     extratags=[(42113, "s", 0, "-9999", True)])


@pytest.mark.parametrize("setup,flags,words", [
    (_odd_band_count, (), ("water_odd.tif", "12-band", "13-band", "replace or remove")),
    (None, ("--config.data.bands=3,13",), ("--config.data.bands=3,13", "out of range",
                                           "0-12")),
    (_nan_tile, (), ("crops_nan.tif", "NaN", "remove the tile")),
    (_nodata_tile, (), ("crops_nodata.tif", "nodata", "remove the tile")),
    (None, ("--config.export.formats=litert,tflite2",), ("--config.export.formats",
                                                          "tflite2", "onnx")),
])
def test_bad_multispectral_inputs(tmp_path, setup, flags, words):
    data = tmp_path / "d"
    write_tiles(data, n=4, size=16, bands=13, dtype="float32" if setup is _nan_tile
                else "uint16")
    if setup is not None:
        setup(data)
    wd = tmp_path / "w"
    proc = cli(*FAST, f"--config.data.data_dir={data}", *flags, f"--workdir={wd}",
               cwd=tmp_path)
    _bad(proc, *words)
    assert not wd.exists() or not any(wd.iterdir())


def test_bands_on_an_rgb_dataset_is_refused(tmp_path):
    proc = cli("--config.data.name=eurosat", "--config.data.bands=1",
               f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    _bad(proc, "--config.data.bands", "leave --config.data.bands out")
