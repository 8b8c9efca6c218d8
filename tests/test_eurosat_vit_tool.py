"""tools/eurosat_vit.py: the EuroSAT ViT result (train, prune to half the
MACs, AML + KD fine-tune, same-MAC scratch ViT, LiteRT), run end to end on a
tiny fake EuroSAT folder; its model builder (tools/keras_vits.image_vit)
prunes exactly; bad flags and folders are one line, exit 2."""
import json
import subprocess
import sys

import numpy as np
import pytest

import remotetrimmer_tf as rt
from helpers import env, load_tool, make_eurosat_folder, REPO
from remotetrimmer_tf.graph import silence_dropped

sys.path.insert(0, str(REPO / "tools"))
tool = load_tool("eurosat_vit")
import keras_vits  # noqa: E402  (tools/, put on the path above)

TINY = ["--image_size", "32", "--patch", "8", "--depth", "2", "--width", "32", "--heads", "4",
        "--key_dim", "8", "--mlp_dim", "64", "--epochs", "1", "--finetune_epochs", "1",
        "--batch_size", "16", "--latency_rounds", "2", "--parity_images", "4"]


def _exit_line(capsys, argv):
    with pytest.raises(SystemExit) as info:
        tool.main(argv)
    assert info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.slow
def test_tool_runs_end_to_end_and_resumes(tmp_path, capsys):
    data = make_eurosat_folder(tmp_path / "data", per_class=4, size=32) / "2750"
    results = tmp_path / "res" / "vit.md"
    argv = ["--data_dir", str(data), "--out", str(tmp_path / "work"),
            "--results", str(results), *TINY]
    tool.main(argv)
    report = json.loads(results.with_suffix(".json").read_text())
    rec = report["records"]
    parent, pruned, scratch = rec["train"]["macs"], rec["prune"]["macs"], rec["scratch"]["macs"]
    assert pruned <= 0.5 * parent * 1.01
    assert abs(scratch - pruned) <= 0.05 * pruned
    assert rec["finetune"]["macs"] == pruned
    assert rec["train"]["heads"] == [4, 4] and min(rec["prune"]["heads"]) >= 1
    assert rec["scratch"]["heads"] == rec["prune"]["heads"]
    assert rec["scratch"]["mlp"] == rec["prune"]["mlp"] and max(rec["prune"]["mlp"]) < 64
    assert rec["scratch"]["epochs"] == 2 and rec["finetune"]["recipe"]["loss"] == "aml"
    assert rec["finetune"]["recipe"]["distill_weight"] > 0
    for phase in ("train", "prune", "finetune", "scratch"):
        assert 0.0 <= rec[phase]["accuracy"] <= 1.0
    assert min(rec["measure"]["latency_ms"].values()) > 0
    assert rec["measure"]["parity"]["max_abs_diff"] < 1e-3
    md = results.read_text()
    assert md.startswith("# EuroSAT ViT") and "Command: `python tools/eurosat_vit.py" in md
    assert md.count("| pruned") == 2 and "**Verdict:**" in md and report["verdict"] in md
    # the same command again: every phase was done, nothing is retrained
    capsys.readouterr()
    tool.main(argv)
    out = capsys.readouterr().out
    assert out.count("done before") == len(tool.PHASES)
    again = json.loads(results.with_suffix(".json").read_text())["records"]
    assert again == rec
    # a fresh process finishing a stopped run loads the saved phases
    (tmp_path / "work" / "measure.json").unlink()
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "eurosat_vit.py"), *argv],
                          env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("done before") == len(tool.PHASES) - 1
    assert json.loads(results.with_suffix(".json").read_text())["records"]["train"] == rec["train"]
    # other settings in the same work folder: refused, naming the flag
    line = _exit_line(capsys, [*argv, "--epochs", "2"])
    assert "--epochs" in line and "--out" in line


def test_balanced_subset_is_per_class_and_seeded():
    labels = np.repeat(np.arange(10), [30] * 9 + [3])
    idx = tool.balanced_subset(labels, 45, seed=1)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts[:5].tolist() == [5] * 5 and counts[5:9].tolist() == [4] * 4
    assert counts[9] == 3                         # a class with fewer gives all it has
    assert np.array_equal(idx, tool.balanced_subset(labels, 45, seed=1))
    assert not np.array_equal(idx, tool.balanced_subset(labels, 45, seed=2))
    assert len(tool.balanced_subset(labels, 0, seed=0)) == len(labels)


@pytest.mark.parametrize("flags,word", [
    (["--macs_fraction", "1.5"], "--macs_fraction"),
    (["--epochs", "0"], "--epochs"),
    (["--image_size", "30"], "--patch"),
    (["--results", "x.txt"], "--results"),
    (["--bogus"], "--bogus"),
])
def test_bad_flags_are_one_line(capsys, tmp_path, flags, word):
    assert word in _exit_line(capsys, ["--out", str(tmp_path / "w"), *flags])
    assert not (tmp_path / "w").exists()


def test_bad_data_folder_is_one_line_before_out_is_touched(capsys, tmp_path):
    line = _exit_line(capsys, ["--data_dir", str(tmp_path / "nowhere"),
                               "--out", str(tmp_path / "w"), *TINY])
    assert "--data_dir" in line and "class folders" in line
    odd = make_eurosat_folder(tmp_path / "odd", per_class=1, size=8) / "2750"
    (odd / "Clouds").mkdir()
    line = _exit_line(capsys, ["--data_dir", str(odd),
                               "--out", str(tmp_path / "w"), *TINY])
    assert "--data_dir" in line and "Clouds" in line
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("heads,mlp", [(4, 64), ([4, 2], [48, 64])])
def test_image_vit_prunes_heads_and_mlp_exactly(heads, mlp):
    model = keras_vits.image_vit(32, 8, 2, 32, heads, 8, mlp, classes=5)
    pruner = rt.Pruner(model, importance="l1", target_macs=0.5 * rt.count_macs(model))
    keep = pruner.plan()
    small = rt.prune_channels(model, keep, graph=pruner.graph)
    assert rt.count_macs(small) <= 0.5 * rt.count_macs(model)
    heads_after, mlp_after = keras_vits.layer_widths(small, 2)
    assert min(heads_after) >= 1 and sum(mlp_after) < sum(keras_vits.layer_widths(model, 2)[1])
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    quiet = silence_dropped(model, keep, graph=pruner.graph)
    a, b = np.asarray(quiet(x)), np.asarray(rt.prune_channels(quiet, keep)(x))
    assert np.max(np.abs(a - b)) <= 1e-4 * max(1.0, np.abs(a).max())
    # the residual stream (class token, position table, LayerNorms) stays whole
    assert small.get_layer("class_position").weights[1].shape == (1, 17, 32)
