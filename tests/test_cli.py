"""`python -m remotetrimmer_tf.prune`: artifacts, resume, bad input.

The CLI runs in subprocesses on a tiny EuroSAT-layout folder of generated
JPEGs (32x32) and a tiny SE model passed as --init_model (the session
fixtures `assets` and `tiny_run` of conftest.py: one full run, attention ->
fold -> prune -> recalibrate -> finetune -> evaluate -> float32 LiteRT
export -> report, shared by the tests that read it); int8 export runs in
the demo. Bad inputs refused before TensorFlow starts are fast; the rest
start TensorFlow and are in the slow tier.
"""
import json
import os
import pathlib
import zipfile

import numpy as np
import pytest

from helpers import ARTIFACTS, cli, sha, stderr_lines, tiny_args


def test_full_run_artifacts_and_report(tiny_run, assets):
    import keras
    from remotetrimmer_tf.cost import count_macs, count_params
    from remotetrimmer_tf.models import SqueezeExcite  # noqa: F401 (registers)
    wd = tiny_run["workdir"]
    for name in ARTIFACTS:
        assert (wd / name).is_file(), name
    assert not list(wd.glob(".tmp-*")), "temporary files left behind"
    assert not list((wd / "logs").rglob("*.keras")), "fit checkpoints left"
    try:
        import matplotlib  # noqa: F401
        assert (wd / "widths.png").read_bytes()[:4] == b"\x89PNG"
    except ImportError:
        pass
    assert "params" in tiny_run["stdout"] and "MACs" in tiny_run["stdout"]

    # report.json agrees with the saved models
    report = json.loads((wd / "report.json").read_text())
    for label, fname in (("trained", "model_trained.keras"),
                         ("folded", "model_folded.keras"),
                         ("pruned", "model_pruned.keras"),
                         ("finetuned", "model_finetuned.keras")):
        m = keras.saving.load_model(wd / fname, compile=False)
        assert report["models"][label]["params"] == count_params(
            m, trainable_only=True), label
        assert report["models"][label]["macs"] == count_macs(m), label
        assert report["models"][label]["file_bytes"] == (wd / fname).stat().st_size
    assert report["models"]["pruned"]["params"] < report["models"]["folded"]["params"]
    assert report["models"]["pruned"]["macs"] < report["models"]["folded"]["macs"]
    # published local rule: floor(C * (1 - 0.7)) -> 8 -> 2, 16 -> 4
    assert report["widths"]["c1"] == {"before": 8, "after": 2}
    assert report["widths"]["c2"] == {"before": 16, "after": 4}
    assert report["widths"]["fc"] == {"before": 10, "after": 10}
    for key in ("trained", "folded", "pruned", "recalibrated", "finetuned"):
        assert 0.0 <= report["accuracy"][key] <= 1.0, key
    assert report["files"]["model.tflite"] == (wd / "model.tflite").stat().st_size
    assert set(report["timings_s"]) >= {"train", "prune", "export", "total"}
    # the report states the precision and threads fine-tuning ran with
    compute = report["stages"]["finetune"]["history"]["compute"]
    assert compute["precision"] in ("float32", "mixed_bfloat16")
    assert compute["intra_op_threads"] >= 1
    assert f"finetune: precision {compute['precision']}" in (wd / "report.md").read_text()
    # ... and how its BatchNorm statistics were settled (re-estimated every epoch)
    history = report["stages"]["finetune"]["history"]
    assert history["bn_settle"] == "epoch" and history["bn_batches"] >= 1
    assert "finetune: BatchNorm statistics re-estimated after every epoch" in (
        wd / "report.md").read_text()
    assert isinstance(report["warnings"], list)
    # the user's model was checked for unsettled statistics before it was used
    assert report["stages"]["train"]["bn_statistics"]["action"] in ("kept", "re-estimated")
    kept = json.loads((wd / "kept.json").read_text())
    assert sorted(len(v["kept"]) for v in kept.values()) == [2, 4]
    ledger = json.loads((wd / "stages.json").read_text())
    assert list(ledger["stages"]) == ["train", "attention", "fold", "prune",
                                      "recalibrate", "finetune", "evaluate",
                                      "export", "report"]
    assert ledger["stages"]["train"]["info"]["source"] == "init_model"
    # a default run prints no TensorFlow C++ error lines (E0000 ...)
    assert not [l for l in tiny_run["stderr"].splitlines() if l.startswith("E0")]


def test_the_users_model_is_only_read(tiny_run, assets):
    assert sha(assets["model"]) == assets["model_sha"], "the user's model was modified"
    ledger = json.loads((tiny_run["workdir"] / "stages.json").read_text())
    assert ledger["stages"]["train"]["info"]["init_model"] == str(assets["model"])


@pytest.mark.slow
def test_rerun_skips_everything_and_a_changed_config_needs_resume(
        tiny_run, tiny_run_copy, assets):
    wd = tiny_run_copy
    # identical rerun: every stage is skipped, nothing rewritten, same table
    mtimes = {p.name: p.stat().st_mtime_ns for p in wd.iterdir() if p.is_file()}
    table = tiny_run["stdout"].split("run folder:")[0]
    proc = cli(*tiny_args(assets, wd), cwd=wd.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("train", "attention", "fold", "prune", "recalibrate",
                  "finetune", "evaluate", "export", "report"):
        assert f"{stage}: finished earlier, skipped" in proc.stderr, stage
    assert proc.stdout.split("run folder:")[0] == table
    assert {p.name: p.stat().st_mtime_ns for p in wd.iterdir()
            if p.is_file() and p.name != "stages.json"} == {
        k: v for k, v in mtimes.items() if k != "stages.json"}

    # a different config is refused without --resume, in one line
    changed = tiny_args(assets, wd, "--config.prune.ratio=0.5")
    proc = cli(*changed, cwd=wd.parent)
    assert proc.returncode == 2
    lines = stderr_lines(proc)
    assert len(lines) == 1 and "prune.ratio" in lines[0] and "--resume" in lines[0]
    # (--resume rerunning only the changed stages: see
    # test_failed_stage_leaves_nothing_looking_finished, in-process)


def _corrupt(path):
    path.write_bytes(b"this is not a zip archive" * 10)
    return path


def _zip_without_config(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", "{}")
    return path


BAD_INPUTS = {
    "unknown_field": (["--config.prune.ratoi=0.5"],
                      ["--config.prune.ratoi", "did you mean --config.prune.ratio"]),
    "unknown_section": (["--config.pruning.ratio=0.5"], ["--config.pruning.ratio"]),
    "ratio_one": (["--config.prune.ratio=1.0"], ["--config.prune.ratio", "[0, 1)"]),
    "round_mode_unknown": (["--config.prune.round_mode=ceil"],
                           ["--config.prune.round_mode", "down"]),
    "ratio_negative": (["--config.prune.ratio=-0.1"], ["--config.prune.ratio"]),
    "ratio_not_a_number": (["--config.prune.ratio=abc"], ["--config.prune.ratio"]),
    "missing_init_model": (["--init_model={tmp}/nope.keras"],
                           ["--init_model", "nope.keras", "no such file"]),
    "corrupt_init_model": (["--init_model={corrupt}"], ["--init_model", "corrupt"]),
    "zip_not_keras": (["--init_model={zipped}"], ["--init_model", "corrupt"]),
    "workdir_under_a_file": (["--workdir={tmp}/afile/run"], ["--workdir"]),
    "workdir_not_a_run_folder": (["--workdir={tmp}/userdir"],
                                 ["--workdir", "not a run folder"]),
    "unknown_stage": (["--stages=train,bogus"], ["--stages", "bogus"]),
    "missing_config_file": (["--config={tmp}/none.py"], ["--config", "none.py"]),
    "stage_prerequisite": (["--stages=prune"], ["--stages", "train"]),
    "unknown_force_stage": (["--force=bogus"], ["--force", "bogus"]),
    "verbose_out_of_range": (["--verbose=3"], ["--verbose", "[0, 2]"]),
    "verbose_negative": (["--verbose=-1"], ["--verbose"]),
    "config_not_a_python_file": (["--config={notes}"], ["--config", "not a config file"]),
    "config_without_get_config": (["--config={noget}"], ["--config", "get_config"]),
    "config_returning_a_dict": (["--config={plain}"], ["--config", "ConfigDict"]),
    "unknown_flag": (["--bogus_flag=1"], ["bogus_flag"]),
    "data_dir_missing": (["--config.data.data_dir={tmp}/nodata"],
                         ["--config.data.data_dir", "not a folder"]),
    "data_dir_without_dataset": (["--config.data.data_dir={tmp}/userdir"],
                                 ["--config.data.data_dir", "not found"]),
    "num_classes_vs_data": (["--config.model.num_classes=3"],
                            ["--config.model.num_classes=3", "10 classes"]),
}


# Refused only after TensorFlow started (inputs loaded / checked): ~10 s each.
AFTER_TF_START = {"missing_init_model", "corrupt_init_model", "zip_not_keras",
                  "workdir_under_a_file", "workdir_not_a_run_folder",
                  "unknown_stage", "stage_prerequisite", "unknown_force_stage",
                  "data_dir_without_dataset"}


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.slow) if c in AFTER_TF_START else c
    for c in sorted(BAD_INPUTS)])
def test_bad_input_exits_nonzero_with_one_line(case, tmp_path):
    args, expected = BAD_INPUTS[case]
    (tmp_path / "afile").write_text("x")
    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "notes.txt").write_text("mine")
    (tmp_path / "notes.md").write_text("# not a config\n")
    (tmp_path / "noget.py").write_text("x = 1\n")
    (tmp_path / "plain.py").write_text("def get_config():\n    return {'a': 1}\n")
    fmt = dict(tmp=tmp_path, corrupt=_corrupt(tmp_path / "bad.keras"),
               zipped=_zip_without_config(tmp_path / "z.keras"),
               notes=tmp_path / "notes.md", noget=tmp_path / "noget.py",
               plain=tmp_path / "plain.py")
    args = [a.format(**fmt) for a in args]
    if not any(a.startswith("--workdir") for a in args):
        args.append(f"--workdir={tmp_path / 'wd'}")
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in proc.stderr
    # the user's folder is untouched and no artifact looks finished
    assert sorted(os.listdir(tmp_path / "userdir")) == ["notes.txt"]
    assert not list(tmp_path.rglob("*.tflite"))
    assert not list((tmp_path / "wd").glob("model_*.keras")) if (
        tmp_path / "wd").exists() else True


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root can write into read-only folders")
def test_read_only_workdir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        proc = cli(f"--workdir={ro}/run", cwd=tmp_path)
    finally:
        ro.chmod(0o700)
    assert proc.returncode == 2
    assert stderr_lines(proc)[0].startswith("error: --workdir")


def test_new_run_dirs_never_collide(tmp_path):
    from remotetrimmer_tf.pipeline.workdir import new_run_dir
    dirs = {new_run_dir(tmp_path / "runs") for _ in range(3)}
    assert len(dirs) == 3 and all(d.is_dir() for d in dirs)


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    from remotetrimmer_tf.pipeline.workdir import Workdir
    wd = Workdir(tmp_path / "w")
    with pytest.raises(RuntimeError):
        with wd.atomic("model.keras") as tmp:
            pathlib.Path(tmp).write_bytes(b"partial")
            raise RuntimeError("crash mid-write")
    assert os.listdir(wd.path) == []
    wd.write_json("a.json", {"x": np.float32(1.5)})
    assert json.loads((wd / "a.json").read_text()) == {"x": 1.5}


def test_failed_stage_leaves_nothing_looking_finished(assets, tmp_path, monkeypatch):
    """In-process with stand-in stages: a stage that raises after writing an
    artifact leaves neither the file nor a ledger entry; rerunning resumes."""
    from remotetrimmer_tf.pipeline import config_base, run_pipeline
    from remotetrimmer_tf.pipeline import stages as stages_mod
    cfg = config_base().get_config()
    cfg.data.data_dir = str(assets["data"])   # the inputs are checked first
    calls = []

    def writer(stage, fail=False):
        def fn(run):
            calls.append(stage)
            run.wd.write_text(f"{stage}.out", stage)
            if fail:
                raise RuntimeError(f"{stage} crashed")
            return [f"{stage}.out"], {}
        return fn

    fake = {s: writer(s) for s in stages_mod.STAGES}
    fake["prune"] = writer("prune", fail=True)
    monkeypatch.setattr(stages_mod, "FUNCTIONS", fake)
    wd = tmp_path / "run"
    with pytest.raises(RuntimeError, match="prune crashed"):
        run_pipeline(cfg, workdir=wd, log=lambda line: None)
    assert not (wd / "prune.out").exists()
    assert (wd / "fold.out").exists()
    ledger = json.loads((wd / "stages.json").read_text())
    assert list(ledger["stages"]) == ["train", "attention", "fold"]
    fake["prune"] = writer("prune")
    calls.clear()
    summary = run_pipeline(cfg, workdir=wd, log=lambda line: None)
    assert calls == ["prune", "recalibrate", "finetune", "evaluate", "export",
                     "report"]
    assert summary["skipped"] == ["train", "attention", "fold"]
    # a changed prune config reruns prune and everything after it, and
    # drops the stale downstream results first
    cfg.prune.ratio = 0.5
    with pytest.raises(Exception, match="--resume"):
        run_pipeline(cfg, workdir=wd, log=lambda line: None)
    calls.clear()
    run_pipeline(cfg, workdir=wd, resume=True, stages="train,attention,fold,prune",
                 log=lambda line: None)
    assert calls == ["prune"]
    assert not (wd / "export.out").exists() and (wd / "prune.out").exists()
    # ... moved aside, never deleted
    assert list((wd / "superseded").rglob("export.out"))


def test_discard_written_removes_a_failed_stage_files(tmp_path):
    from remotetrimmer_tf.pipeline.workdir import Workdir
    wd = Workdir(tmp_path / "w")
    wd.start({}, "t")
    wd.begin_stage()
    wd.write_text("a.json", "{}")
    wd.discard_written()
    assert not (wd / "a.json").exists() and (wd / "stages.json").exists()


def test_ledger_requires_artifacts(tmp_path):
    from remotetrimmer_tf.pipeline.workdir import Workdir
    wd = Workdir(tmp_path / "w")
    wd.start({"a": 1}, "t")
    wd.write_text("x.txt", "1")
    wd.mark_finished("train", "k1", ["x.txt"], {}, 0.1)
    assert Workdir(wd.path).finished("train", "k1") is not None
    assert Workdir(wd.path).finished("train", "k2") is None      # other config
    (wd / "x.txt").unlink()
    assert Workdir(wd.path).finished("train", "k1") is None      # artifact gone


def test_stage_keys_chain():
    from remotetrimmer_tf.pipeline.stages import STAGES, stage_keys
    cfg = {s: {"v": 1} for s in ("data", "model", "train", "attention", "prune",
                                 "recalibrate", "finetune", "evaluate", "export")}
    a = stage_keys(cfg)
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["prune"]["v"] = 2
    b = stage_keys(cfg2)
    i = STAGES.index("prune")
    assert all(a[s] == b[s] for s in STAGES[:i])
    assert all(a[s] != b[s] for s in STAGES[i:])
    assert stage_keys(cfg, "abc")["train"] != a["train"]


@pytest.mark.slow
def test_finetune_distills_from_the_trained_model_when_asked(assets, tiny_run_copy):
    wd = tiny_run_copy     # train .. recalibrate are reused; finetune reruns
    proc = cli(*tiny_args(assets, wd, "--config.finetune.distill_weight=1.0",
                          "--stages=train,attention,fold,prune,recalibrate,finetune"),
               "--resume", cwd=wd.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "prune: finished earlier, skipped" in proc.stderr
    ledger = json.loads((wd / "stages.json").read_text())
    info = json.dumps(ledger["stages"]["finetune"])
    assert '"teacher": "model_trained.keras"' in info, info[:500]
    assert (wd / "model_finetuned.keras").is_file()


@pytest.mark.slow
def test_round_mode_reaches_the_pruner(assets, tiny_run_copy):
    wd = tiny_run_copy     # train .. fold are reused; prune reruns
    # ratio 0.5 plans 4 of 8 and 8 of 16 channels; multiples of 3 rounded down
    proc = cli(*tiny_args(assets, wd, "--config.prune.ratio=0.5",
                          "--config.prune.round_to=3", "--config.prune.round_mode=down",
                          "--stages=train,attention,fold,prune"), "--resume",
               cwd=wd.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fold: finished earlier, skipped" in proc.stderr
    kept = json.loads((wd / "kept.json").read_text())
    assert sorted(len(v["kept"]) for v in kept.values()) == [3, 6]
