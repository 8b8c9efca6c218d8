"""Nothing lost, ever: validate-first resume, bad data, lock, interrupts,
fingerprints, --force, full disk, reproducible runs.

CLI cases run `python -m remotetrimmer_tf.prune` on the tiny EuroSAT-layout
folder and tiny SE model of `test_cli.py`; ledger logic runs in-process with
stand-in stages (seconds).
"""
import errno
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import cli, env, one_error_line, save_keras_quietly, sha, tiny_args


def snapshot(folder):
    """{relative path: sha256} of every file under `folder`."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_copy(tiny_run_copy):
    """A private copy of the session's finished tiny run (conftest.tiny_run)."""
    return tiny_run_copy


def _save_tiny(path, classes=10, size=32, bn=True):
    import keras
    L = keras.layers
    x = keras.Input((size, size, 3))
    h = L.Conv2D(8, 3, padding="same", use_bias=not bn, name="c1")(x)
    if bn:
        h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="r1")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    y = L.Dense(classes, name="fc")(h)
    return save_keras_quietly(keras.Model(x, y), path)


def _data_copy(assets, tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(assets["data"], dst)
    return dst


# --------------------------------------------------- 1. validate-first resume
@pytest.mark.slow
def test_failed_resume_missing_classes_leaves_the_run_unchanged(assets, run_copy, tmp_path):
    before = snapshot(run_copy)
    data = _data_copy(assets, tmp_path)
    shutil.rmtree(data / "2750" / "Forest")
    args = [a for a in tiny_args(assets, run_copy) if "data_dir" not in a]
    proc = cli(*args, f"--config.data.data_dir={data}", "--resume", cwd=tmp_path)
    one_error_line(proc, "Forest", "data_dir")
    assert snapshot(run_copy) == before


@pytest.mark.slow
def test_failed_resume_init_model_other_classes_leaves_the_run_unchanged(
        assets, run_copy, tmp_path):
    before = snapshot(run_copy)
    other = _save_tiny(tmp_path / "five.keras", classes=5)
    args = [a for a in tiny_args(assets, run_copy) if "init_model" not in a]
    proc = cli(*args, f"--init_model={other}", "--resume", cwd=tmp_path)
    one_error_line(proc, "--init_model", "5 outputs", "10 classes")
    assert snapshot(run_copy) == before


@pytest.mark.slow
def test_failed_resume_bad_image_leaves_the_run_unchanged(assets, run_copy, tmp_path):
    before = snapshot(run_copy)
    data = _data_copy(assets, tmp_path)
    bad = data / "2750" / "River" / "River_2.jpg"
    bad.write_bytes(bad.read_bytes()[:200])            # truncated download
    args = [a for a in tiny_args(assets, run_copy) if "data_dir" not in a]
    proc = cli(*args, f"--config.data.data_dir={data}", "--resume", cwd=tmp_path)
    one_error_line(proc, "River_2.jpg", "skip_bad_files")
    assert snapshot(run_copy) == before


@pytest.mark.slow
def test_init_model_inside_the_run_folder_survives(assets, tmp_path):
    """--init_model=RUN/model_trained.keras --workdir=RUN --resume: the file
    stays (same bytes) and the run finishes; it used to be deleted first."""
    wd = tmp_path / "run"
    base = [f"--workdir={wd}", f"--config.data.data_dir={assets['data']}",
            "--config.data.image_size=32", "--config.data.batch_size=16",
            "--config.train.epochs=0", "--config.prune.importance=slim",
            "--verbose=0", "--stages=train"]
    proc = cli(*base, cwd=tmp_path)                  # trained "from scratch"
    assert proc.returncode == 0, proc.stderr[-3000:]
    mine = wd / "model_trained.keras"
    digest = sha(mine)
    proc = cli(*base, f"--init_model={mine}", "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert mine.is_file() and sha(mine) == digest
    assert "inputs/init_model-" in proc.stderr
    ledger = json.loads((wd / "stages.json").read_text())
    assert ledger["stages"]["train"]["info"]["source"] == "init_model"
    # the model it replaced is kept, not deleted
    assert list((wd / "superseded").rglob("model_trained.keras"))


# ------------------------------------------------------------- 2. bad images
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty", "truncated", "not_an_image"])
def test_bad_image_named_before_training(assets, tmp_path, kind):
    data = _data_copy(assets, tmp_path)
    bad = data / "2750" / "Highway" / "Highway_3.jpg"
    if kind == "empty":
        bad.write_bytes(b"")
    elif kind == "truncated":
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    else:
        bad.write_text("<html>404 not found</html>")
    args = [a for a in tiny_args(assets, tmp_path / "wd") if "data_dir" not in a]
    proc = cli(*args, f"--config.data.data_dir={data}", cwd=tmp_path)
    one_error_line(proc, str(bad), "--config.data.skip_bad_files=True")
    assert not list((tmp_path / "wd").glob("*.keras"))


@pytest.mark.slow
def test_skip_bad_files_runs_and_reports_them(assets, tmp_path):
    data = _data_copy(assets, tmp_path)
    (data / "2750" / "Pasture" / "Pasture_1.jpg").write_bytes(b"")
    (data / "2750" / "SeaLake" / "SeaLake_0.jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 50)
    wd = tmp_path / "wd"
    args = [a for a in tiny_args(assets, wd) if "data_dir" not in a]
    proc = cli(*args, f"--config.data.data_dir={data}",
               "--config.data.skip_bad_files=True",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads((wd / "report.json").read_text())
    assert rep["data"]["skipped_bad_files"] == ["Pasture/Pasture_1.jpg",
                                                "SeaLake/SeaLake_0.jpg"]
    assert rep["data"]["skipped_count"] == 2
    assert "leaving out 2 unreadable image(s)" in proc.stderr


def test_image_checks_unit(tmp_path):
    from PIL import Image
    from remotetrimmer_tf.data import checks
    good = tmp_path / "A" / "good.png"
    good.parent.mkdir()
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(good)
    cut = tmp_path / "A" / "cut.png"
    cut.write_bytes(good.read_bytes()[:-12])
    grey = tmp_path / "A" / "grey.jpg"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(grey)   # 1 channel: converts
    bad = checks.find_bad_images([good, cut, grey])
    assert list(bad) == [str(cut)] and "PNG" in bad[str(cut)]
    files, labels, skipped = checks.filter_bad_images(
        tmp_path, ["A/good.png", "A/cut.png"], np.array([0, 1]), skip=True)
    assert files == ["A/good.png"] and labels.tolist() == [0] and skipped == ["A/cut.png"]
    with pytest.raises(checks.BadImageError, match="cut.png"):
        checks.filter_bad_images(tmp_path, ["A/cut.png"], [0])


def test_split_file_list_checks_after_splitting(assets, tmp_path):
    """Skipping a bad file never moves a good file to the other split."""
    from remotetrimmer_tf.data import api
    data = _data_copy(assets, tmp_path)
    _, train0, _ = api.split_file_list("eurosat", "train", data_dir=data)
    _, test0, _ = api.split_file_list("eurosat", "test", data_dir=data)
    victim = train0[0]
    (data / "2750" / victim).write_bytes(b"")
    with pytest.raises(ValueError, match=victim.split("/")[-1]):
        api.split_file_list("eurosat", "train", data_dir=data)
    _, train1, _ = api.split_file_list("eurosat", "train", data_dir=data,
                                       skip_bad_files=True)
    _, test1, _ = api.split_file_list("eurosat", "test", data_dir=data,
                                      skip_bad_files=True)
    assert train1 == train0[1:] and test1 == test0


# ------------------------------------------------------ in-process stand-ins
def _tiny_cfg(assets):
    from remotetrimmer_tf.pipeline import config_base
    cfg = config_base().get_config()
    cfg.data.data_dir = str(assets["data"])
    cfg.data.image_size = 32
    return cfg


def _fake(monkeypatch, calls, fail=None):
    from remotetrimmer_tf.pipeline import stages as stages_mod

    def writer(stage):
        def fn(run):
            calls.append(stage)
            if fail is not None:
                fail(stage, run)
            run.wd.write_text(f"{stage}.out", stage)
            return [f"{stage}.out"], {}
        return fn

    monkeypatch.setattr(stages_mod, "FUNCTIONS",
                        {s: writer(s) for s in stages_mod.STAGES})
    return stages_mod.STAGES


def _quiet(lines):
    return lambda line: lines.append(line)


@pytest.mark.slow
def test_damaged_artifact_and_changed_data_are_rerun(assets, tmp_path, monkeypatch):
    from remotetrimmer_tf.pipeline import run_pipeline
    calls, log = [], []
    stages = _fake(monkeypatch, calls)
    cfg = _tiny_cfg(assets)
    data = _data_copy(assets, tmp_path)
    cfg.data.data_dir = str(data)
    wd = tmp_path / "run"
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    assert calls == list(stages)
    # a damaged artifact: that stage and the later ones rerun, saying why
    (wd / "prune.out").write_text("garbage")
    calls.clear()
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    assert calls == list(stages[stages.index("prune"):])
    assert any("prune: rerunning (prune.out changed" in l for l in log), log
    damaged = list((wd / "superseded").rglob("prune.out"))
    assert [p.read_text() for p in damaged] == ["garbage"]
    # changed data (an image rewritten): everything reruns, saying so
    img = data / "2750" / "Forest" / "Forest_1.jpg"
    img.write_bytes(img.read_bytes() + b"\x00")
    os.utime(img, ns=(time.time_ns(), time.time_ns() + 10**9))
    calls.clear()
    log.clear()
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    assert calls == list(stages)
    assert any("data files changed" in l and "Forest" in l for l in log), log
    # unchanged: nothing reruns
    calls.clear()
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    assert calls == []


@pytest.mark.slow
def test_force_and_explicit_stages(assets, tmp_path, monkeypatch):
    from remotetrimmer_tf.pipeline import PipelineError, run_pipeline
    calls, log = [], []
    _fake(monkeypatch, calls)
    cfg = _tiny_cfg(assets)
    wd = tmp_path / "run"
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    calls.clear()
    log.clear()
    summary = run_pipeline(cfg, workdir=wd, stages="export", log=_quiet(log))
    assert calls == [] and summary["ran"] == []
    assert any("export: finished earlier, skipped; pass --force=export" in l
               for l in log), log
    assert any(l.startswith("[remotetrimmer] nothing to run") for l in log)
    run_pipeline(cfg, workdir=wd, stages="export", force="export", log=_quiet(log))
    assert calls == ["export"]
    calls.clear()
    run_pipeline(cfg, workdir=wd, force="finetune", log=_quiet(log))
    assert calls == ["finetune", "evaluate", "export", "report"]
    with pytest.raises(PipelineError, match="--force"):
        run_pipeline(cfg, workdir=wd, force="bogus", log=_quiet(log))


def test_full_disk_one_line_and_resumable(assets, tmp_path, monkeypatch):
    from remotetrimmer_tf.pipeline import PipelineError, run_pipeline
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith("finetune.out"):
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return real_replace(src, dst)

    calls, log = [], []
    _fake(monkeypatch, calls)
    cfg = _tiny_cfg(assets)
    wd = tmp_path / "run"
    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(PipelineError) as err:
        run_pipeline(cfg, workdir=wd, log=_quiet(log))
    msg = str(err.value)
    assert "\n" not in msg and "No space left on device" in msg
    assert "finetune" in msg and "rerun the same command" in msg
    assert not list(wd.rglob(".tmp-*")) and not (wd / ".lock").exists()
    ledger = json.loads((wd / "stages.json").read_text())
    assert list(ledger["stages"])[-1] == "recalibrate"
    monkeypatch.setattr(os, "replace", real_replace)
    calls.clear()
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    assert calls == ["finetune", "evaluate", "export", "report"]


@pytest.mark.slow
def test_leftover_temporaries_removed_on_next_start(assets, tmp_path, monkeypatch):
    from remotetrimmer_tf.pipeline import run_pipeline
    calls, log = [], []
    _fake(monkeypatch, calls)
    cfg = _tiny_cfg(assets)
    wd = tmp_path / "run"
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    (wd / ".tmp-4242-ab12cd34-model_pruned.keras").write_bytes(b"")
    (wd / "logs" / "finetune").mkdir(parents=True)
    (wd / "logs" / "finetune" / ".tmp-4242-last.keras").write_bytes(b"")
    (wd / "logs" / "finetune" / "state.json.tmp-4242").write_text("{")
    (wd / ".model.tflite.x1y2.tmp").write_bytes(b"")
    log.clear()
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    assert not [p for p in wd.rglob("*") if "tmp" in p.name], list(wd.rglob("*"))
    assert any("removed 4 temporary file(s)" in l for l in log), log


# --------------------------------------------------------------------- 3. lock
@pytest.mark.slow
def test_busy_run_folder_is_refused_and_stale_lock_taken_over(assets, tmp_path,
                                                             monkeypatch):
    from remotetrimmer_tf.pipeline import run_pipeline
    from remotetrimmer_tf.pipeline.lock import RunLock
    calls, log = [], []
    _fake(monkeypatch, calls)
    cfg = _tiny_cfg(assets)
    wd = tmp_path / "run"
    run_pipeline(cfg, workdir=wd, stages="train", log=_quiet(log))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (wd / ".lock").write_text(json.dumps(
            {"pid": other.pid, "host": socket.gethostname(), "started": "x"}))
        before = snapshot(wd)
        args = ["--config.data.image_size=32", f"--config.data.data_dir={assets['data']}",
                f"--workdir={wd}", "--stages=train"]
        proc = cli(*args, cwd=tmp_path)
        one_error_line(proc, "in use by process", str(other.pid))
        assert snapshot(wd) == before
    finally:
        other.kill()
        other.wait()
    # the owner died (kill -9): its lock is stale and taken over with a note
    log.clear()
    calls.clear()
    run_pipeline(cfg, workdir=wd, log=_quiet(log))
    assert any(f"stale lock of process {other.pid}" in l for l in log), log
    assert calls[0] == "attention" and not (wd / ".lock").exists()
    with RunLock(wd):
        assert json.loads((wd / ".lock").read_text())["pid"] == os.getpid()
    assert not (wd / ".lock").exists()


# --------------------------------------------------------------- interrupts
def _interrupt_at(args, cwd, stage, sig, delay=0.3):
    """Starts the CLI, sends `sig` `delay` s after `stage` starts (a short
    stage gets 0: on a fast machine it may be over in 0.3 s); returns
    (rc, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "remotetrimmer_tf.prune", *args],
                            cwd=cwd, env=env(), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    lines = []
    deadline = time.time() + 200
    for line in proc.stderr:
        lines.append(line)
        if f"{stage}: running" in line:
            time.sleep(delay)
            proc.send_signal(sig)
            break
        assert time.time() < deadline
    rest = proc.stderr.read()
    rc = proc.wait(timeout=120)
    return rc, "".join(lines) + rest


@pytest.mark.slow
@pytest.mark.parametrize("sig,code,stage,delay", [
    (signal.SIGINT, 130, "finetune", 0.3), (signal.SIGTERM, 143, "recalibrate", 0.0)])
def test_interrupt_is_one_line_and_resumable(assets, tmp_path, sig, code, stage, delay):
    wd = tmp_path / "run"
    args = tiny_args(assets, wd, "--stages=train,attention,fold,prune,"
                     "recalibrate,finetune")
    rc, err = _interrupt_at(args, tmp_path, stage, sig, delay)
    assert rc == code, err[-3000:]
    last = [l for l in err.splitlines() if l.strip()][-1]
    assert last == f"interrupted during {stage}; rerun the same command to resume"
    assert "Traceback" not in err
    assert not [p for p in wd.rglob("*") if ".tmp" in p.name]
    assert not (wd / ".lock").exists()
    ledger = json.loads((wd / "stages.json").read_text())
    assert stage not in ledger["stages"]
    for entry in ledger["stages"].values():              # ledger matches files
        for name, digest in entry["sha256"].items():
            assert sha(wd / name)[:16] == digest
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fold: finished earlier, skipped" in proc.stderr
    assert (wd / "model_finetuned.keras").is_file()


# ------------------------------------------------------------ 6. one-liners
@pytest.mark.slow
def test_model_without_bn_and_slim_is_one_line(assets, tmp_path):
    nobn = _save_tiny(tmp_path / "nobn.keras", bn=False)
    args = [a for a in tiny_args(assets, tmp_path / "wd") if "init_model" not in a]
    proc = cli(*args, f"--init_model={nobn}", "--config.prune.importance=slim",
               cwd=tmp_path)
    one_error_line(proc, "--init_model", "BatchNormalization",
                    "--config.prune.importance=l1")


@pytest.mark.parametrize("importance,bn,needle", [
    ("cap", False, "BatchNormalization"), ("slim", False, "BatchNormalization")])
def test_init_model_checked_against_the_criterion(assets, tmp_path, importance,
                                                  bn, needle):
    """No BN: slim and cap (whose inserted SE gates follow BNs) are refused."""
    from remotetrimmer_tf.pipeline import PipelineError
    from remotetrimmer_tf.pipeline.inputs import check_init_model
    from remotetrimmer_tf.pipeline.stages import Run
    cfg = _tiny_cfg(assets)
    cfg.prune.importance = importance
    path = _save_tiny(tmp_path / "m.keras", bn=bn)
    with pytest.raises(PipelineError, match=needle):
        check_init_model(Run(cfg, None, init_model=str(path)))
    cfg.prune.importance = "l1"
    check_init_model(Run(cfg, None, init_model=str(path)))   # fine for l1


def test_cap_on_a_gate_free_model_with_bn_is_accepted(assets, tmp_path):
    """cap without SE gates inserts them: the check lets it through."""
    from remotetrimmer_tf.pipeline.inputs import check_init_model
    from remotetrimmer_tf.pipeline.stages import Run
    cfg = _tiny_cfg(assets)
    cfg.prune.importance = "cap"
    path = _save_tiny(tmp_path / "m.keras", bn=True)
    check_init_model(Run(cfg, None, init_model=str(path)))


def test_init_model_with_another_input_size(assets, tmp_path):
    from remotetrimmer_tf.pipeline import PipelineError
    from remotetrimmer_tf.pipeline.inputs import check_init_model
    from remotetrimmer_tf.pipeline.stages import Run
    cfg = _tiny_cfg(assets)
    path = _save_tiny(tmp_path / "m16.keras", size=16)
    with pytest.raises(PipelineError, match="image_size=16"):
        check_init_model(Run(cfg, None, init_model=str(path)))


def test_num_classes_disagreeing_with_model_or_data(assets, tmp_path):
    proc = cli(*tiny_args(assets, tmp_path / "wd", "--config.model.num_classes=3"),
               cwd=tmp_path)
    one_error_line(proc, "--config.model.num_classes=3", "10 classes")
    args = [a for a in tiny_args(assets, tmp_path / "wd2") if "init_model" not in a]
    proc = cli(*args, "--config.model.num_classes=3", "--config.train.epochs=0",
               cwd=tmp_path)
    one_error_line(proc, "--config.model.num_classes=3", "10 classes")


@pytest.mark.slow
def test_tpu_without_tpu(assets, tmp_path):
    proc = cli(*tiny_args(assets, tmp_path / "wd", "--strategy=tpu"), cwd=tmp_path)
    one_error_line(proc, "--strategy=tpu", "--strategy=default")
    assert not list((tmp_path / "wd").glob("*.keras"))


# ---------------------------------------------------------- 5. reproducible
def _weights_equal(runs, fname):
    import keras
    import remotetrimmer_tf.models  # noqa: F401 - registers SqueezeExcite
    wa, wb = (keras.saving.load_model(r / fname, compile=False).get_weights()
              for r in runs)
    return len(wa) == len(wb) and all(np.array_equal(a, b) for a, b in zip(wa, wb))


@pytest.mark.slow
def test_two_seeded_demo_runs_are_bitwise_identical(assets, tmp_path):
    """The demo config (modern recipe: flips/rot90 augmentation, per-epoch
    reshuffle), made tiny: two runs give the same report.json accuracies and
    the same weights, LiteRT export included."""
    args = tiny_args(assets, tmp_path / "x", "--config.finetune.epochs=2",
                     "--config.finetune.steps_per_epoch=2")
    runs = []
    for name in ("a", "b"):
        wd = tmp_path / name
        proc = cli(*[a for a in args if not a.startswith("--workdir")],
                   f"--workdir={wd}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(wd)
    rep = [json.loads((r / "report.json").read_text()) for r in runs]
    assert rep[0]["accuracy"] == rep[1]["accuracy"]
    assert rep[0]["determinism"]["op_determinism"] is True
    for fname in ("model_pruned.keras", "model_recalibrated.keras",
                  "model_finetuned.keras"):
        assert _weights_equal(runs, fname), fname
    assert sha(runs[0] / "model.tflite") == sha(runs[1] / "model.tflite")


@pytest.mark.slow
def test_two_seeded_trainings_from_scratch_are_bitwise_identical(assets, tmp_path):
    """ResNet-18 + SE built and trained (2 steps) twice: same weights, same
    accuracy (the model used to be initialised before the seed was set)."""
    runs = []
    for name in ("a", "b"):
        wd = tmp_path / name
        proc = cli(f"--workdir={wd}", f"--config.data.data_dir={assets['data']}",
                   "--config.data.image_size=32", "--config.data.batch_size=32",
                   "--config.train.epochs=1", "--config.train.steps_per_epoch=2",
                   "--config.train.batch_size=16", "--stages=train", "--verbose=0",
                   cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(wd)
    info = [json.loads((r / "stages.json").read_text())["stages"]["train"]["info"]
            for r in runs]
    assert info[0]["metrics"] == info[1]["metrics"]
    assert info[0]["history"] == info[1]["history"]
    assert _weights_equal(runs, "model_trained.keras")


def test_a_signal_swallowed_by_a_finaliser_is_redelivered():
    """Python ignores an exception raised in __del__ (frequent with TF
    objects); the interrupt must still arrive, without a printed traceback."""
    import threading
    from remotetrimmer_tf.pipeline.interrupt import Interrupted, signals_as_interrupts

    class Slow:
        def __del__(self):
            time.sleep(0.3)          # the signal lands here

    t0 = time.time()
    with pytest.raises(Interrupted) as err:
        with signals_as_interrupts():
            threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
            obj = Slow()
            del obj
            while time.time() - t0 < 10:
                sum(range(1000))
    assert err.value.exit_code == 130 and time.time() - t0 < 5


def test_an_op_without_deterministic_kernel_is_one_line(assets, tmp_path, monkeypatch):
    from remotetrimmer_tf.pipeline import PipelineError, run_pipeline

    class UnimplementedError(Exception):     # the name TensorFlow raises
        pass

    def fail(stage, run):
        if stage == "finetune":
            raise UnimplementedError("A deterministic GPU implementation of "
                                     "SparseSegmentSum is not currently available.")

    calls, log = [], []
    _fake(monkeypatch, calls, fail=fail)
    with pytest.raises(PipelineError, match="deterministic=False") as err:
        run_pipeline(_tiny_cfg(assets), workdir=tmp_path / "run", log=_quiet(log))
    assert "finetune" in str(err.value) and "\n" not in str(err.value)


def test_a_signal_inside_fit_waits_for_a_batch_boundary():
    """Inside `deferred()` (a Keras fit) SIGINT does not raise where it lands
    (inside TensorFlow that crashed the process once) but at the next batch
    boundary, which the pipeline's callback checks."""
    import os
    import signal
    import time
    from remotetrimmer_tf.pipeline.interrupt import (Interrupted, deferred,
                                                     raise_if_pending,
                                                     signals_as_interrupts)
    reached = []
    with pytest.raises(Interrupted):
        with signals_as_interrupts():
            with deferred():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(20):     # ~1 s: the watchdog re-delivers meanwhile
                    time.sleep(0.05)
                reached.append("after the signal")
                raise_if_pending()
    assert reached == ["after the signal"]
