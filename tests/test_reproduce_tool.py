"""tools/reproduce.py: job graph, resume bookkeeping and the results table."""
import json
import os
import pathlib
from helpers import load_tool

ROOT = pathlib.Path(__file__).resolve().parents[1]
reproduce = load_tool("reproduce")


def _parse(argv):
    captured = {}
    real = reproduce.orchestrate
    reproduce.orchestrate = lambda args: captured.setdefault("args", args) and 0
    try:
        reproduce.main(argv)
    finally:
        reproduce.orchestrate = real
    return captured["args"]


def test_jobs_depend_on_the_right_backbone(tmp_path):
    args = _parse(["--out", str(tmp_path), "--rows", "cap+aml,slim+ce",
                   "--ratios", "0.7,0.5", "--seeds", "0,1"])
    jobs = reproduce._job_names(args)
    assert jobs["train-se-s1"] == ["data"] and jobs["train-plain-s0"] == ["data"]
    assert jobs["prune-cap-r0.7-s0"] == ["train-se-s0"]
    assert jobs["prune-slim-r0.5-s1"] == ["train-plain-s1"]
    assert jobs["finetune-cap-aml-r0.5-s1"] == ["prune-cap-r0.5-s1"]
    # every dependency is itself a job, and comes earlier in the order
    order = list(jobs)
    for name, deps in jobs.items():
        for d in deps:
            assert order.index(d) < order.index(name)
    assert len([n for n in jobs if n.startswith("finetune")]) == 2 * 2 * 2


def test_summary_aggregates_seeds_and_skips_unfinished_rows(tmp_path):
    args = _parse(["--out", str(tmp_path), "--rows", "cap+aml,slim+ce",
                   "--ratios", "0.7", "--seeds", "0,1"])

    def put(name, **result):
        path = tmp_path / "jobs" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"job": name, "seconds": 1.0, **result}))

    for seed, acc in ((0, 0.96), (1, 0.98)):
        put(f"train-se-s{seed}", accuracy=0.97, epochs=5)
        put(f"prune-cap-r0.7-s{seed}", params=10, macs=20, params_unpruned=100,
            macs_unpruned=200, accuracy_pruned=0.1, accuracy_recalibrated=0.3,
            accuracy_folded=0.9)
        put(f"finetune-cap-aml-r0.7-s{seed}", accuracy=acc, epochs=2)
    reproduce.summarize(args, 12.0, echo=False)
    report = json.loads((tmp_path / "results.json").read_text())
    assert [(r["criterion"], r["loss"]) for r in report["rows"]] == [("cap", "aml")]
    assert len(report["rows"][0]["seeds"]) == 2
    md = (tmp_path / "results.md").read_text()
    assert "**97.00 ± 1.00**" in md and "5 + 2" in md
    assert os.path.basename(str(tmp_path)) in report["command"]


def test_kd_rows_share_the_pruned_model_and_bad_rows_are_refused(tmp_path):
    import pytest
    args = _parse(["--out", str(tmp_path), "--rows", "cap+aml,cap+aml+kd,l1+ce+kd"])
    jobs = reproduce._job_names(args)
    assert jobs["finetune-cap-aml_kd-r0.7-s0"] == ["prune-cap-r0.7-s0"]
    assert jobs["finetune-l1-ce_kd-r0.7-s0"] == ["prune-l1-r0.7-s0"]
    assert len([n for n in jobs if n.startswith("prune")]) == 2
    for bad in ("cap+mse", "cap+aml+kd+x", "cap"):
        args.rows = bad
        with pytest.raises(SystemExit, match="bad row"):
            reproduce._job_names(args)


def test_resummarize_keeps_the_command_clean(tmp_path):
    args = ["--out", str(tmp_path), "--rows", "slim+ce"]
    for name, result in (("train-plain-s0", dict(accuracy=0.9, epochs=3)),
                         ("prune-slim-r0.7-s0", dict(params=10, macs=20, params_unpruned=100,
                                                     macs_unpruned=200, accuracy_pruned=0.1,
                                                     accuracy_recalibrated=0.3)),
                         ("finetune-slim-ce-r0.7-s0", dict(accuracy=0.8, epochs=2))):
        path = tmp_path / "jobs" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"job": name, "seconds": 1.0, **result}))
    assert reproduce.main(args + ["--summarize"]) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert "--summarize" not in report["command"] and report["wall_seconds"] is None
    assert "not recorded" in (tmp_path / "results.md").read_text()


def test_jobs_are_valid_pipeline_configs(tmp_path):
    """Every job runs pipeline stages: its config passes the CLI's checks and
    carries the row (criterion, ratio, loss, KD) and the tool's recipe."""
    from remotetrimmer_tf.pipeline import validate_config
    args = _parse(["--out", str(tmp_path), "--rows", "cap+aml+kd,l1+ce", "--ratios", "0.5",
                   "--train_epochs", "3", "--finetune_epochs", "2", "--round_to", "8",
                   "--data_dir", str(ROOT / "remotetrimmer_tf" / "assets" / "eurosat_sample")])
    train = reproduce._config(args, 1, se=True)
    assert train.model.se and train.train.epochs == 3 and train.train.seed == 1
    assert train.train.loss == "ce" and train.export.quantize == ()
    prune = reproduce._config(args, 0, crit="l1", ratio=0.5)
    assert not prune.model.se and prune.prune.importance == "l1"
    assert prune.prune.ratio == 0.5 and prune.prune.round_to == 8
    fine = reproduce._config(args, 0, crit="cap", ratio=0.5, loss="aml_kd")
    assert fine.model.se and fine.finetune.loss == "aml" and fine.finetune.epochs == 2
    assert fine.finetune.distill_weight == 1.0
    for cfg in (train, prune, fine):
        validate_config(cfg)
    assert reproduce._paths(args, "prune-l1-r0.5-s0")[1] == str(tmp_path / "runs" /
                                                              "prune-l1-r0.5-s0")


def test_latency_twins_are_no_slower_than_their_published_row(tmp_path):
    """--latency_twins adds, per row, a prune job timed against the row's
    published-width model (which it depends on), fine-tuned the same way;
    a latency search runs alone."""
    import pytest
    from remotetrimmer_tf.pipeline import budget_of, validate_config
    args = _parse(["--out", str(tmp_path), "--rows", "l1+ce", "--seeds", "0",
                   "--latency_twins", "importance,macs", "--latency_dtype", "float32",
                   "--data_dir", str(ROOT / "remotetrimmer_tf" / "assets" / "eurosat_sample")])
    jobs = reproduce._job_names(args)
    assert jobs["prune-l1-r0.7+lat_macs-s0"] == ["prune-l1-r0.7-s0"]
    assert jobs["finetune-l1-ce-r0.7+lat_importance-s0"] == ["prune-l1-r0.7+lat_importance-s0"]
    assert reproduce._variant("r0.7+lat_macs") == (0.7, "macs")
    assert reproduce._variant("r0.5") == (0.5, None)
    twin = "prune-l1-r0.7+lat_macs-s0"
    assert reproduce._startable([twin, "finetune-l1-ce-r0.7-s0"], {}) == [twin]
    assert reproduce._startable([twin], {"finetune-l1-ce-r0.7-s0": 0}) == []
    assert reproduce._startable(["finetune-l1-ce-r0.7-s0"], {twin: 0}) == []
    assert reproduce._startable(["a", "b"], {"c": 0}) == ["a", "b"]
    ref = tmp_path / "ref.keras"
    ref.write_bytes(b"")
    cfg = reproduce._config(args, 0, crit="l1", ratio=0.7, twin="macs", reference=str(ref))
    validate_config(cfg)
    p = cfg.prune
    assert (p.target_latency_of, p.dtype, p.threads, p.objective) == (str(ref), "float32", 1,
                                                                      "macs")
    prune = reproduce._row_config(args, 0, "l1", "r0.7+lat_macs")
    fine = reproduce._row_config(args, 0, "l1", "r0.7+lat_macs", loss="ce")
    assert prune.prune.to_dict() == fine.prune.to_dict()   # fine-tune resumes after prune
    assert prune.prune.target_latency_of.endswith(
        os.path.join("runs", "prune-l1-r0.7-s0", "model_pruned.keras"))
    assert reproduce._row_config(args, 0, "l1", "r0.7").prune.target_latency_of is None
    with pytest.raises(Exception, match="target_latency_of"):
        budget_of(p)                          # an empty file is no model: one clear error
    args.latency_twins = "speed"
    with pytest.raises(SystemExit, match="latency_twins"):
        reproduce._job_names(args)
