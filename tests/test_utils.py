"""The shared bottom helpers (remotetrimmer_tf.utils) and the lists of choices."""
import ast
import pathlib

import keras
import numpy as np
import pytest

from remotetrimmer_tf import choices
from remotetrimmer_tf.utils import batches, files, keras_json, keras_models, provenance

REPO = pathlib.Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ bottom layer
def test_utils_import_nothing_from_the_package_above():
    for path in (REPO / "remotetrimmer_tf" / "utils").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not (node.module.startswith("remotetrimmer_tf")
                            and not node.module.startswith("remotetrimmer_tf.utils")), \
                    (path.name, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("remotetrimmer_tf") for a in node.names), \
                    path.name


def test_no_other_atomic_writer_in_the_package():
    """Every write-then-rename goes through utils.files (the superseded/ move
    of pipeline.workdir is a move, not a write)."""
    found = []
    for path in (REPO / "remotetrimmer_tf").rglob("*.py"):
        if path.parent.name == "utils":
            continue
        for i, line in enumerate(path.read_text().splitlines()):
            if "os.replace(" in line and "def " not in line:
                found.append(f"{path.relative_to(REPO)}:{i + 1}")
    assert len(found) <= 1 and all(
        f.startswith("remotetrimmer_tf/pipeline/workdir.py:") for f in found), found


# ------------------------------------------------------------------ atomic writes
def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with files.atomic_path(target) as tmp:
            assert pathlib.Path(tmp).name.startswith(".tmp-")
            assert tmp.endswith("-out.keras")
            pathlib.Path(tmp).write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.keras"]


def test_atomic_path_refuses_an_empty_body(tmp_path):
    with pytest.raises(RuntimeError, match="nothing was written"):
        with files.atomic_path(tmp_path / "x.txt"):
            pass
    assert not list(tmp_path.iterdir())


def test_atomic_path_replaces_a_folder(tmp_path):
    target = tmp_path / "saved"
    target.mkdir()
    (target / "old.pb").write_text("old")
    with files.atomic_path(target, directory=True) as tmp:
        (pathlib.Path(tmp) / "new.pb").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]


def test_write_helpers(tmp_path):
    files.write_json_atomic(tmp_path / "a.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "a.json").read_text().startswith('{\n  "a"')
    files.write_text_atomic(tmp_path / "t.md", "x")
    files.write_bytes_atomic(tmp_path / "b.bin", b"\0\1")
    assert (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "t.md"]


# ------------------------------------------------------------------ batches
X = np.arange(5 * 4 * 4 * 3, dtype=np.float32).reshape(5, 4, 4, 3)
Y = np.arange(5) % 3


@pytest.mark.parametrize("form", ["array", "tuple", "list", "generator", "callable"])
def test_as_sample_array_reads_every_form(form):
    data = {"array": X, "tuple": (X, Y), "list": [(X[:2], Y[:2]), (X[2:], Y[2:])],
            "generator": ((X[i:i + 2], Y[i:i + 2]) for i in range(0, 5, 2)),
            "callable": lambda: iter([X[:3], X[3:]])}[form]
    got = batches.as_sample_array(data, ndim=4)
    np.testing.assert_array_equal(got, X)
    assert got.dtype == np.float32
    assert len(batches.as_sample_array(
        data if form not in ("generator",) else iter([X]), limit=3, ndim=4)) == 3


def test_as_sample_array_single_samples_and_errors():
    assert batches.as_sample_array(X[0], ndim=4).shape == (1, 4, 4, 3)
    assert batches.as_sample_array(iter(list(X)), ndim=4).shape == (5, 4, 4, 3)
    with pytest.raises(ValueError, match="`check_data` yielded no samples"):
        batches.as_sample_array(iter([]), name="check_data")
    with pytest.raises(ValueError, match="rank"):
        batches.as_sample_array(X[:, 0, 0, 0], ndim=4)
    with pytest.raises(TypeError, match="dict"):
        batches.as_sample_array(iter([{"x": X}]))


def test_as_xy_one_hot_and_errors():
    x, y = batches.as_xy([(X[:2], np.eye(3)[Y[:2]]), (X[2:], np.eye(3)[Y[2:]])])
    np.testing.assert_array_equal(y, Y.astype(np.int32))
    assert y.dtype == np.int32 and x.dtype == np.float32
    x, y = batches.as_xy((X, Y), limit=2)
    assert x.shape == (2, 4, 4, 3) and y.tolist() == [0, 1]
    with pytest.raises(TypeError, match="`train_data` must yield"):
        batches.as_xy(iter([X]), name="train_data")
    with pytest.raises(ValueError, match="images but"):
        batches.as_xy([(X, Y[:2])])


def test_iterate_batches_steps_and_labels():
    got = list(batches.iterate_batches((X, Y), steps=2, batch_size=2, labels=True))
    assert [(x.shape[0], y.tolist()) for x, y in got] == [(2, [0, 1]), (2, [2, 0])]
    with pytest.raises(ValueError, match="labelled"):
        list(batches.iterate_batches(X, labels=True))


# ------------------------------------------------------------------ keras helpers
def _seq(*layers):
    return keras.Sequential([keras.Input((4,)), *layers])


@pytest.mark.parametrize("model, logits", [
    (lambda: _seq(keras.layers.Dense(3)), True),
    (lambda: _seq(keras.layers.Dense(3, activation="softmax")), False),
    (lambda: _seq(keras.layers.Dense(3), keras.layers.Softmax()), False),
    (lambda: _seq(keras.layers.Dense(3), keras.layers.Activation("softmax")), False),
    (lambda: _seq(keras.layers.Dense(3, activation="log_softmax")), True),
    (lambda: _seq(keras.layers.Dense(3, activation="relu")), True),
    (lambda: _seq(_seq(keras.layers.Dense(3), keras.layers.Softmax())), False),
])
def test_infer_from_logits(model, logits):
    """The one version: a Softmax layer or a nested classifier count as
    probabilities too (the QAT copy said logits for both); log_softmax is
    log-probabilities, which cross-entropy on logits reads correctly."""
    assert keras_models.infer_from_logits(model()) is logits


def test_training_and_qat_use_the_one_infer_from_logits():
    from remotetrimmer_tf import training
    from remotetrimmer_tf.export import qat
    assert training.infer_from_logits is keras_models.infer_from_logits
    assert not hasattr(qat, "_infer_from_logits")


def test_clone_with_weights_and_custom_objects():
    @keras.saving.register_keras_serializable(package="test_utils")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inner = _seq(Twice(), keras.layers.Dense(2))
    outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])
    objs = keras_models.custom_objects(outer)
    assert objs == {"Twice": Twice, "test_utils>Twice": Twice}
    clone = keras_models.clone_with_weights(outer)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(clone(x), outer(x))
    with pytest.raises(ValueError, match="different weights"):
        keras_models.copy_weights(_seq(keras.layers.Dense(3)), outer)


def test_keras_json_walkers_do_not_modify_the_config():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
                              keras.layers.Dense(2, name="b")])
    func = keras.Model(model.inputs, model.outputs)
    cfg = func.get_config()
    hist = keras_json.keras_histories(cfg["layers"])
    assert [h[0] for h in hist] == [cfg["layers"][0]["name"], "a"]
    moved = keras_json.map_keras_tensors(
        cfg["layers"], lambda t: {**t, "config": {**t["config"], "keras_history": ["z", 0, 0]}})
    assert {h[0] for h in keras_json.keras_histories(moved)} == {"z"}
    assert keras_json.keras_histories(cfg["layers"]) == hist


def test_provenance_names_command_and_commit():
    info = provenance.provenance(["tools/x.py", "--out", "a b"])
    assert info["command"] == "python tools/x.py --out 'a b'"
    assert info["commit"] == "unknown" or len(info["commit"].split("+")[0]) == 40


# ------------------------------------------------------------------ choices
def test_choices_match_the_registries():
    from remotetrimmer_tf import importance
    from remotetrimmer_tf.importance import reductions
    assert set(choices.BUILTIN_IMPORTANCES) <= set(importance.available())
    assert tuple(reductions.REDUCTIONS) == choices.REDUCTIONS
    from remotetrimmer_tf.planning import widths
    assert widths.ROUND_MODES is choices.ROUND_MODES


def test_validate_config_accepts_a_registered_criterion():
    from remotetrimmer_tf import importance, prune as cli
    from remotetrimmer_tf.pipeline import PipelineError, validate_config
    cfg = cli.load_config_file(str(REPO / "configs" / "demo.py"))
    cfg.prune.importance = "ones_test_utils"
    with pytest.raises(PipelineError, match="--config.prune.importance"):
        validate_config(cfg)
    importance.register_importance("ones_test_utils", lambda g, m, **c: np.ones(g.size),
                                   override=True)
    try:
        assert "ones_test_utils" in choices.importances()
        validate_config(cfg)
    finally:
        importance._REGISTRY.pop("ones_test_utils", None)
