"""`--config.prune.rounds=k`: iterative pruning in the CLI (pipeline/rounds.py).

Fast: the checks of the flag, the epoch split, kept.json composition, stage
keys, the report's rounds table and plot (synthetic); in-process on the tiny
assets, rounds to a MACs target. Slow, in-process: a run killed in round 2
resumes at round 2 (round 1 is not redone), and a changed fine-tune config
redoes the rounds. Slow: the CLI end to end
(rounds=3 ends at the one-shot model's widths, report with 3 rounds).
"""
import json

import pytest

from helpers import cli, one_error_line, sha, tiny_args


# ------------------------------------------------------------------ the flag
@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_rounds_exit_2_with_one_line(value, tmp_path):
    proc = cli(f"--config.prune.rounds={value}", f"--workdir={tmp_path / 'wd'}",
               cwd=tmp_path)
    one_error_line(proc, "--config.prune.rounds", "integer >= 1")
    assert not (tmp_path / "wd").exists()


def test_rounds_with_a_latency_target_is_refused_in_one_line(tmp_path):
    proc = cli("--config.prune.rounds=3", "--config.prune.target_latency_ms=5",
               f"--workdir={tmp_path / 'wd'}", cwd=tmp_path)
    one_error_line(proc, "--config.prune.rounds=3", "target_latency_ms", "rounds=1")


def _cfg(assets, rounds=3, epochs=2):
    from remotetrimmer_tf.pipeline import config_base
    cfg = config_base().get_config()
    cfg.data.data_dir = str(assets["data"])
    cfg.data.image_size, cfg.data.batch_size = 32, 16
    cfg.finetune.epochs, cfg.finetune.batch_size = epochs, 16
    cfg.recalibrate.steps = 2
    cfg.export.quantize = ()
    cfg.prune.rounds = rounds
    return cfg


def test_validate_config_names_the_flag():
    from remotetrimmer_tf.pipeline import PipelineError, config_base
    from remotetrimmer_tf.pipeline.config import validate_config
    cfg = config_base().get_config()
    for bad in (0, -1):
        cfg.prune.rounds = bad
        with pytest.raises(PipelineError, match=r"--config\.prune\.rounds="):
            validate_config(cfg)
    cfg.prune.rounds = 3
    cfg.prune.target_macs = 1e5
    validate_config(cfg)    # a MACs target prunes in rounds too


def test_multi_worker_with_rounds_is_refused_before_anything_runs(assets, tmp_path):
    from remotetrimmer_tf.pipeline import PipelineError, run_pipeline
    with pytest.raises(PipelineError, match="--strategy=multi_worker"):
        run_pipeline(_cfg(assets), workdir=tmp_path / "wd", strategy="multi_worker",
                     init_model=str(assets["model"]), log=lambda line: None)
    assert not (tmp_path / "wd").exists()


# ------------------------------------------------------------ the pieces
@pytest.mark.parametrize("epochs,k", [(10, 3), (2, 3), (0, 4), (7, 1), (30, 5)])
def test_epoch_shares_total_the_finetune_epochs(epochs, k):
    from remotetrimmer_tf.iterative import epoch_shares
    shares = epoch_shares(epochs, k)
    assert len(shares) == k and sum(shares) == epochs
    assert max(shares) - min(shares) <= 1 and shares == sorted(shares)


def test_finetune_section_is_the_rounds_share(assets):
    from remotetrimmer_tf.pipeline.rounds import finetune_section
    cfg = _cfg(assets, rounds=3, epochs=10)
    assert [finetune_section(cfg, i).epochs for i in (1, 2, 3)] == [3, 3, 4]
    assert cfg.finetune.epochs == 10            # the config is not changed
    cfg.prune.rounds = 1
    assert finetune_section(cfg, 1) is cfg.finetune


def test_prune_key_follows_the_finetune_recipe_only_with_rounds():
    from remotetrimmer_tf.pipeline.stages import stage_keys
    cfg = {s: {"v": 1} for s in ("data", "model", "train", "attention", "prune",
                                 "recalibrate", "finetune", "evaluate", "export")}
    changed = json.loads(json.dumps(cfg))
    changed["finetune"]["v"] = 2
    assert stage_keys(cfg)["prune"] == stage_keys(changed)["prune"]     # one-shot
    for c in (cfg, changed):
        c["prune"]["rounds"] = 3
    assert stage_keys(cfg)["prune"] != stage_keys(changed)["prune"]
    assert stage_keys(cfg)["fold"] == stage_keys(changed)["fold"]


def test_compose_kept_maps_back_to_the_original_channels():
    from remotetrimmer_tf.pipeline.rounds import compose_kept
    r1 = {"0": {"size": 8, "kept": [0, 2, 3, 5, 6, 7], "layers": ["a", "bn"]},
          "3": {"size": 4, "kept": [1, 2, 3], "layers": ["z"]}}
    r2 = {"0": {"size": 6, "kept": [1, 4, 5], "layers": ["a", "bn"]},
          "1": {"size": 16, "kept": list(range(0, 16, 2)), "layers": ["b"]}}
    out = compose_kept(r1, r2)
    assert out["0"] == {"size": 8, "kept": [2, 6, 7], "layers": ["a", "bn"]}
    assert out["1"]["size"] == 16 and out["1"]["kept"] == list(range(0, 16, 2))
    assert out["3"] == r1["3"]                   # pruned in round 1 only
    assert list(out) == ["0", "1", "3"]
    assert compose_kept({}, r2) == r2


def test_schedule_of_a_budget_ends_at_the_target():
    import keras

    import remotetrimmer_tf as rt
    from remotetrimmer_tf.iterative import schedule_of
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(inp)))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(24, 3, padding="same")(x)))
    model = keras.Model(inp, L.Dense(3)(L.GlobalAveragePooling2D()(x)))
    target = rt.count_macs(model) // 3
    one = rt.Pruner(model, importance="l1", target_macs=target)
    pruned = one.prune()
    schedule = schedule_of(one, pruned, 3)
    assert schedule[-1] == {"ratio": None, "target_macs": target}
    assert 0 < schedule[0]["ratio"] < one.budget_report["ratio"]
    by_ratio = rt.Pruner(model, importance="l1", ratio=0.5)
    small = by_ratio.prune()
    assert schedule_of(by_ratio, small, 2)[-1] == {
        "ratio": None, "target_params": rt.count_params(small, trainable_only=True)}
    assert schedule_of(by_ratio, small, 1) == [{"ratio": 0.5}]


def _rounds_report():
    widths = lambda a, b: {"c1": a, "c2": b, "fc": 10}  # noqa: E731
    rounds = [{"round": i, "ratio": r, "widths": widths(*w), "params": p, "macs": 10 * p,
               "accuracy_pruned": 0.5, "accuracy": 0.6 + 0.01 * i, "epochs": e,
               "finetune_seconds": 1.0}
              for i, r, w, p, e in ((1, 0.25, (6, 12), 900, 1), (2, 0.5, (4, 8), 500, 1),
                                    (3, 0.75, (2, 4), 180, 2))]
    return {"name": "t", "widths": {"c1": {"before": 8, "after": 2},
                                    "c2": {"before": 16, "after": 4},
                                    "fc": {"before": 10, "after": 10}},
            "rounds": rounds, "models": {}, "accuracy": {}}


def test_report_shows_the_rounds(tmp_path):
    from remotetrimmer_tf.pipeline import report
    rep = _rounds_report()
    md = report.format_markdown(rep)
    assert "## Rounds (iterative pruning)" in md
    assert "| 3 | 75.0% | 180 | 1,800 | 50.00% | 63.00% | 2 | 1.0 |" in md
    assert "epochs per round 1, 1, 2 (total 4" in md
    assert "900 (61.00%) -> 500 (62.00%) -> 180 (63.00%)" in report.format_table(rep)
    pytest.importorskip("matplotlib")
    assert report.plot_widths(rep, tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"
    assert [label for label, _ in report.width_series(rep, list(rep["widths"].items()))] \
        == ["round 1 (900 params)", "round 2 (500 params)", "round 3 (180 params)"]
    del rep["rounds"]
    assert "## Rounds" not in report.format_markdown(rep)


# ------------------------------------------------------------ in process
def _files(wd, folder):
    return {p.name: (sha(p), p.stat().st_mtime_ns) for p in (wd / folder).iterdir()}


@pytest.mark.slow
def test_a_killed_run_resumes_at_the_round_it_was_in(assets, tmp_path, monkeypatch):
    from remotetrimmer_tf.pipeline import run_pipeline
    from remotetrimmer_tf.pipeline import rounds as rounds_mod
    cfg, wd = _cfg(assets, rounds=3, epochs=3), tmp_path / "run"
    stages = "train,attention,fold,prune"
    real, ran = rounds_mod._run_round, []

    def killed_in_round_2(run, i, *args):
        ran.append(i)
        if i == 2:
            raise RuntimeError("killed in round 2")
        return real(run, i, *args)

    monkeypatch.setattr(rounds_mod, "_run_round", killed_in_round_2)
    with pytest.raises(RuntimeError, match="killed in round 2"):
        run_pipeline(cfg, workdir=wd, init_model=str(assets["model"]), stages=stages,
                     log=lambda line: None)
    assert (wd / "rounds/round_1/round.json").is_file()
    assert not (wd / "model_pruned.keras").exists()
    round_1 = _files(wd, "rounds/round_1")
    ran.clear()
    monkeypatch.setattr(rounds_mod, "_run_round",
                        lambda run, i, *a: (ran.append(i), real(run, i, *a))[1])
    run_pipeline(cfg, workdir=wd, init_model=str(assets["model"]), stages=stages,
                 log=lambda line: None)
    assert ran == [2]                                    # round 1 was not redone
    assert _files(wd, "rounds/round_1") == round_1       # nor rewritten
    ledger = json.loads((wd / "stages.json").read_text())
    info = ledger["stages"]["prune"]["info"]
    assert [r["round"] for r in info["rounds"]] == [1, 2, 3]
    assert [r["epochs"] for r in info["rounds"]] == [1, 1, 1]
    assert "rounds/round_2/round.json" in ledger["stages"]["prune"]["artifacts"]
    # a changed fine-tune recipe changes every round: redone, the old ones kept aside
    cfg.finetune.epochs = 4
    ran.clear()
    run_pipeline(cfg, workdir=wd, init_model=str(assets["model"]), stages=stages,
                 resume=True, log=lambda line: None)
    assert ran == [1, 2]
    assert list((wd / "superseded").rglob("round_1/round.json"))
    assert json.loads((wd / "rounds/round_2/round.json").read_text())["epochs"] == 1
    info = json.loads((wd / "stages.json").read_text())["stages"]["prune"]["info"]
    assert [r["epochs"] for r in info["rounds"]] == [1, 1, 2]


# ------------------------------------------------------------ the CLI
@pytest.mark.slow
def test_three_rounds_end_to_end_end_at_the_one_shot_size(assets, tiny_run, tmp_path):
    import keras

    from remotetrimmer_tf.cost import count_params
    wd = tmp_path / "run"
    proc = cli(*tiny_args(assets, wd, "--config.prune.rounds=3",
                          "--config.finetune.epochs=3"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pruned in 3 rounds" in proc.stdout
    report = json.loads((wd / "report.json").read_text())
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    params = [r["params"] for r in rounds]
    assert params == sorted(params, reverse=True) and len(set(params)) == 3
    assert [r["epochs"] for r in rounds] == [1, 1, 1]     # 3 epochs in all
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rounds)
    final = keras.saving.load_model(wd / "model_finetuned.keras", compile=False)
    assert rounds[-1]["params"] == count_params(final, trainable_only=True)
    assert rounds[-1]["widths"] == {k: v["after"] for k, v in report["widths"].items()}
    # the one-shot run of the same model and ratio: the same widths, +-1 per group
    one_shot = json.loads((tiny_run["workdir"] / "kept.json").read_text())
    kept = json.loads((wd / "kept.json").read_text())
    by_layers = {tuple(v["layers"]): v for v in one_shot.values()}
    assert len(kept) == len(one_shot)
    for v in kept.values():
        ref = by_layers[tuple(v["layers"])]
        assert v["size"] == ref["size"]                    # indices of model_folded
        assert abs(len(v["kept"]) - len(ref["kept"])) <= 1, (v, ref)
        assert max(v["kept"]) < v["size"]
    one_params = json.loads((tiny_run["workdir"] / "report.json").read_text())[
        "models"]["pruned"]["params"]
    assert report["models"]["pruned"]["params"] <= one_params
    md = (wd / "report.md").read_text()
    assert "## Rounds (iterative pruning)" in md
    for artifact in ("model_finetuned.keras", "metrics.json", "model.tflite"):
        assert (wd / artifact).is_file(), artifact
    assert (wd / "rounds/round_2/model_finetuned.keras").is_file()


@pytest.mark.slow
def test_rounds_to_a_macs_target_end_under_it(assets, tmp_path):
    """Only the last round prunes to the target; the earlier ones follow the
    ratio the one-shot search reached. The budget line keeps the folded
    model's MACs as "unpruned"."""
    import keras

    from remotetrimmer_tf.cost import count_macs
    from remotetrimmer_tf.pipeline import run_pipeline
    cfg, wd = _cfg(assets, rounds=2, epochs=2), tmp_path / "run"
    cfg.prune.target_macs = 200_000
    run_pipeline(cfg, workdir=wd, init_model=str(assets["model"]),
                 stages="train,attention,fold,prune", log=lambda line: None)
    info = json.loads((wd / "stages.json").read_text())["stages"]["prune"]["info"]
    schedule = info["schedule"]["widths"]
    assert schedule[-1] == {"ratio": None, "target_macs": 200_000}
    assert 0 < schedule[0]["ratio"] < 0.5
    pruned = keras.saving.load_model(wd / "model_pruned.keras", compile=False)
    folded = keras.saving.load_model(wd / "model_folded.keras", compile=False)
    assert count_macs(pruned) <= 200_000 == info["budget"]["target"]
    assert info["budget"]["achieved"] == count_macs(pruned)
    assert info["budget"]["unpruned"] == count_macs(folded)
    assert info["rounds"][0]["macs"] > info["rounds"][1]["macs"] == count_macs(pruned)
