"""tools/iterative_vs_oneshot.py: options, job configs, the table and its verdict
(from job files written here), and (slow) a tiny end-to-end run."""
import json
import pathlib
import sys

import pytest

from helpers import CLASSES, load_tool

ROOT = pathlib.Path(__file__).resolve().parents[1]
tool = load_tool("iterative_vs_oneshot")
SAMPLE = ROOT / "remotetrimmer_tf" / "assets" / "eurosat_sample"


def test_defaults_are_the_measurement_of_the_issue(tmp_path):
    args = tool.parse(["--out", str(tmp_path)])
    assert (args.dataset, args.image_size, args.ratio) == ("uc_merced", 64, 0.7)
    assert args.round_list == [1, 3, 5] and args.seed_list == [0, 1, 2]
    assert args.results == str(ROOT / "tools" / "results" / "iterative_vs_oneshot")
    with pytest.raises(SystemExit):
        tool.parse(["--out", str(tmp_path), "--rounds", "0,3"])


def test_schedules_differ_only_in_rounds_and_share_the_parent(tmp_path):
    """Same train / attention / fold keys (the parent's folder is reused), the
    same total fine-tuning epochs, valid pipeline configs."""
    from remotetrimmer_tf.pipeline import validate_config
    from remotetrimmer_tf.pipeline.run import _plain
    from remotetrimmer_tf.pipeline.stages import stage_keys
    args = tool.parse(["--out", str(tmp_path), "--dataset", "eurosat", "--data_dir",
                       str(SAMPLE), "--finetune_epochs", "6", "--train_epochs", "2"])
    cfgs = {k: tool.job_config(args, 1, k) for k in (1, 3, 5)}
    keys = {k: stage_keys(_plain(c)) for k, c in cfgs.items()}
    for k, cfg in cfgs.items():
        validate_config(cfg)
        assert cfg.prune.rounds == k and cfg.finetune.epochs == 6 and cfg.prune.ratio == 0.7
        assert cfg.train.seed == 1 and cfg.train.epochs == 2
        assert keys[k]["fold"] == keys[1]["fold"]
        assert (keys[k]["prune"] == keys[1]["prune"]) == (k == 1)


def _put(tmp_path, name, **result):
    path = tmp_path / "jobs" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"job": name, **result}))


def _schedule(k, seed, acc, seconds=10.0):
    return dict(rounds=k, seed=seed, accuracy=acc, params=1000, macs=9000,
                params_unpruned=9000, macs_unpruned=90000,
                epochs=[6] if k == 1 else [2] * 3, finetune_seconds=seconds,
                prune_to_finetune_seconds=seconds + 5, per_round=[])


def test_table_and_verdict_come_from_the_numbers(tmp_path):
    args = tool.parse(["--out", str(tmp_path), "--rounds", "1,3", "--results",
                       str(tmp_path / "table")])
    accs = {1: (0.80, 0.82, 0.81), 3: (0.85, 0.86, 0.87)}
    for seed in (0, 1, 2):
        _put(tmp_path, f"train-s{seed}", seed=seed, accuracy=0.9)
        for k in (1, 3):
            _put(tmp_path, f"rounds{k}-s{seed}", **_schedule(k, seed, accs[k][seed]))
    report = tool.summarize(args)
    md = (tmp_path / "table.md").read_text()
    assert md.splitlines()[2].startswith("Command: `python tools/iterative_vs_oneshot.py")
    assert json.loads((tmp_path / "table.json").read_text())["verdict"] == report["verdict"]
    three = report["schedules"][1]
    assert three["vs_one_shot_points"]["mean"] == pytest.approx(5.0)
    assert "3 rounds: +5.0 ± 0.8 points vs one-shot (exceeds the seed std" in report["verdict"]
    assert "| 3 rounds | 2, 2, 2 |" in md and "**86.00 ± 0.82**" in md
    # a difference inside the seed spread is said to be so
    _put(tmp_path, "rounds3-s2", **_schedule(3, 2, 0.70))
    assert "within the seed std" in tool.summarize(args)["verdict"]


def test_one_seed_has_no_spread_to_judge(tmp_path):
    args = tool.parse(["--out", str(tmp_path), "--rounds", "1,5", "--seeds", "0",
                       "--results", str(tmp_path / "t")])
    _put(tmp_path, "rounds1-s0", **_schedule(1, 0, 0.5))
    _put(tmp_path, "rounds5-s0", **_schedule(5, 0, 0.45))
    assert tool.summarize(args)["verdict"].startswith(
        "5 rounds: -5.0 ± 0.0 points vs one-shot (1 seed")


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    """Two EuroSAT classes of the packaged sample, one seed, one-shot vs 2
    rounds, one batch per epoch: every job runs, the table is written, and a
    rerun runs nothing."""
    import subprocess
    from helpers import env
    cmd = [sys.executable, str(ROOT / "tools" / "iterative_vs_oneshot.py"),
           "--dataset=eurosat", f"--data_dir={SAMPLE}", f"--classes={CLASSES[0]},{CLASSES[1]}",
           "--image_size=32", "--train_epochs=1", "--finetune_epochs=2", "--seeds=0",
           "--rounds=1,2", "--steps_per_epoch=1", "--batch_size=16",
           f"--out={tmp_path / 'out'}", f"--results={tmp_path / 'table'}"]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "table.json").read_text())
    one, two = report["schedules"]
    assert (one["rounds"], two["rounds"]) == (1, 2)
    assert two["epochs_per_round"] == [1, 1] and one["epochs_per_round"] == [2]
    assert two["params"]["mean"] <= one["params"]["mean"]
    assert len(two["jobs"][0]["per_round"]) == 2
    assert "2 rounds:" in report["verdict"]
    again = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "running" not in again.stdout
