"""--strategy=multi_worker: TF_CONFIG checks, two real workers on loopback
ports through the CLI (vs one process), a worker that never comes, and
BackupAndRestore resuming an interrupted fit.

The 2-worker test starts two CLI processes (127.0.0.1 only) on a tiny plain
conv net (no BatchNorm: per-replica batch statistics would differ from one
process; no augmentation: each replica draws its own flips), so the
fine-tuned weights of the 2-worker run must equal a single-process run with
the same global batch.
"""
import hashlib
import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from helpers import env as cli_env
from helpers import make_eurosat_folder, save_keras_quietly
from remotetrimmer_tf.training import strategy as strategy_mod


def _env(**extra):
    """helpers.env() without an inherited TF_CONFIG, plus ``extra``."""
    env = cli_env()
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _cli(args, cwd, env):
    return subprocess.Popen([sys.executable, "-m", "remotetrimmer_tf.prune", *args],
                            cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _communicate(proc, timeout):
    """`proc.communicate`, killing the process (never left behind) on timeout."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s: {err[-3000:]}")


def _lines(text):
    return [l for l in text.splitlines() if l.strip()]


def _errors(text):
    """The error lines of a CLI's stderr (TensorFlow's start-up notices and
    our [remotetrimmer] progress lines aside); never a traceback."""
    assert "Traceback" not in text, text[-3000:]
    return [l for l in _lines(text) if l.startswith("error:")]


# ------------------------------------------------------------ TF_CONFIG
@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'no "task"'),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, '
     '"task": {"type": "worker", "index": 2}}', "index 2 is outside 0..1"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}',
     "is not \"host:port\""),
    ('{"cluster": {"worker": ["h:1", "h:1"]}, "task": {"type": "worker", "index": 0}}',
     "twice"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief' is not a job"),
    ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}',
     'no "worker"'),
])
def test_bad_tf_config_is_one_clear_error(text, words):
    with pytest.raises(strategy_mod.StrategyError, match="TF_CONFIG") as e:
        strategy_mod.parse_tf_config(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_cluster_from_env_tf_config_slurm_or_none():
    cfg = _tf_config([1111, 2222], 1)
    kind, parsed = strategy_mod.cluster_from_env({"TF_CONFIG": cfg})
    assert kind == "tf_config" and parsed["task"] == {"type": "worker", "index": 1}
    slurm = {"SLURM_PROCID": "1", "SLURM_NTASKS": "4", "SLURM_JOB_ID": "7"}
    assert strategy_mod.cluster_from_env(slurm) == ("slurm", None)
    assert strategy_mod.cluster_from_env(dict(slurm, SLURM_NTASKS="1")) == (None, None)
    assert strategy_mod.cluster_from_env({}) == (None, None)
    # TF_CONFIG wins over Slurm
    assert strategy_mod.cluster_from_env(dict(slurm, TF_CONFIG=cfg))[0] == "tf_config"


def test_single_process_is_the_chief():
    assert strategy_mod.is_chief(None) and strategy_mod.num_workers(None) == 1
    assert not strategy_mod.is_multi_worker(None)
    assert strategy_mod.broadcast_bytes(None, b"abc") == b"abc"
    assert strategy_mod.broadcast_json(None, {"a": [1]}) == {"a": [1]}
    assert strategy_mod.agree(None, "x")


# ------------------------------------------------------- 2 workers, CLI
@pytest.fixture(scope="module")
def mw_assets(tmp_path_factory):
    """A 10-class EuroSAT-layout folder (4 JPEGs per class) and a plain
    conv net (no BN, no SE) for l1 pruning."""
    import keras
    root = tmp_path_factory.mktemp("mw_assets")
    make_eurosat_folder(root / "data", per_class=4)
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = keras.Input((32, 32, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    h = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c2")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    y = L.Dense(10, name="fc")(h)
    save_keras_quietly(keras.Model(x, y, name="plain"), root / "plain.keras")
    return root


def _args(mw_assets, *extra):
    return [f"--init_model={mw_assets / 'plain.keras'}", "--workdir=run",
            f"--config.data.data_dir={mw_assets / 'data'}",
            "--config.data.image_size=32", "--config.data.batch_size=8",
            "--config.model.se=False", "--config.prune.importance=l1",
            "--config.prune.ratio=0.5", "--config.recalibrate.steps=0",
            "--config.finetune.epochs=2", "--config.finetune.batch_size=8",
            "--config.finetune.augment=none", "--config.export.quantize=none",
            "--config.train.precision=float32", "--config.finetune.precision=float32",
            "--config.export.check_samples=8", "--verbose=0", *extra]


def _weights(path):
    import keras
    import remotetrimmer_tf.models  # noqa: F401
    return keras.saving.load_model(str(path), compile=False).get_weights()


@pytest.mark.slow
def test_two_workers_on_loopback_match_one_process(mw_assets, tmp_path):
    ports = _free_ports(2)
    procs, homes, tmps = [], [], []
    for i in range(2):
        home, tmp = tmp_path / f"host{i}", tmp_path / f"tmp{i}"
        home.mkdir()
        tmp.mkdir()
        homes.append(home)
        tmps.append(tmp)
        env = _env(TF_CONFIG=_tf_config(ports, i), TMPDIR=str(tmp),
                   REMOTETRIMMER_CLUSTER_TIMEOUT="120")
        # every worker runs the same command (here each in its own folder)
        procs.append(_cli(_args(mw_assets, "--strategy=multi_worker"), home, env))
    single_home = tmp_path / "single"
    single_home.mkdir()
    single = _cli(_args(mw_assets), single_home, _env())
    outs = [_communicate(p, 280) for p in procs]
    s_out, s_err = _communicate(single, 280)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert single.returncode == 0, s_err[-3000:]

    chief_run, worker_home = homes[0] / "run", homes[1]
    assert (chief_run / "report.json").is_file()
    assert (chief_run / "model_finetuned.keras").is_file()
    # the worker wrote nothing: no run folder, its temporary folder is gone
    assert not (worker_home / "run").exists() and list(worker_home.iterdir()) == []
    assert list(tmps[1].iterdir()) == []
    assert "the chief wrote the run folder" in outs[1][0]

    # the worker trained the chief's plan, and both ended with the same weights
    plan = hashlib.sha256((chief_run / "kept.json").read_bytes()).hexdigest()[:16]
    w_err, c_err = outs[1][1], outs[0][1]
    assert f"pruning plan kept.json sha256 {plan}" in w_err, w_err[-2000:]
    digest = [l.rsplit(" ", 1)[1] for l in _lines(c_err) if "finetune weights sha256" in l]
    assert len(digest) == 1 and f"finetune weights sha256 {digest[0]}" in w_err

    # one process with the same global batch: same plan, same weights
    single_run = single_home / "run"
    assert (single_run / "kept.json").read_text() == (chief_run / "kept.json").read_text()
    a, b = _weights(chief_run / "model_finetuned.keras"), _weights(single_run / "model_finetuned.keras")
    moved = _weights(chief_run / "model_pruned.keras")
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) < 1e-5
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, moved)) > 1e-3
    ledger = json.loads((chief_run / "stages.json").read_text())
    assert ledger["stages"]["finetune"]["info"]["history"]["epochs_run"] == 2
    # the backup is removed once training finished
    assert not (chief_run / "logs" / "finetune" / "backup").exists()


@pytest.mark.slow
def test_worker_that_never_comes_times_out_naming_it(mw_assets, tmp_path):
    ports = _free_ports(2)
    env = _env(TF_CONFIG=_tf_config(ports, 0), REMOTETRIMMER_CLUSTER_TIMEOUT="3")
    p = _cli(_args(mw_assets, "--strategy=multi_worker"), tmp_path, env)
    out, err = _communicate(p, 120)
    lines = _errors(err)
    assert p.returncode == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: TF_CONFIG"), err[-2000:]
    assert f"127.0.0.1:{ports[1]}" in lines[0] and "within 3 s" in lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("env, words", [
    ({"TF_CONFIG": "{oops"}, "TF_CONFIG is not valid JSON"),
    ({"REMOTETRIMMER_CLUSTER_TIMEOUT": "soon", "TF_CONFIG": _tf_config([1, 2], 0)},
     "REMOTETRIMMER_CLUSTER_TIMEOUT"),
])
def test_bad_cluster_description_exits_2_in_one_line(mw_assets, tmp_path, env, words):
    p = _cli(_args(mw_assets, "--strategy=multi_worker"), tmp_path, _env(**env))
    out, err = _communicate(p, 120)
    lines = _errors(err)
    assert p.returncode == 2 and len(lines) == 1 and words in lines[0], err[-2000:]


@pytest.mark.slow
def test_data_parallel_on_tensorflow_is_refused(mw_assets, tmp_path):
    p = _cli(_args(mw_assets, "--strategy=data_parallel"), tmp_path,
             _env(KERAS_BACKEND="tensorflow"))
    out, err = _communicate(p, 120)
    lines = _errors(err)
    assert p.returncode == 2 and len(lines) == 1, err[-2000:]
    assert "--strategy=data_parallel" in lines[0] and "--strategy=mirrored" in lines[0]


# ------------------------------------------------------ BackupAndRestore
class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_backup_and_restore_resumes_an_interrupted_fit(tmp_path):
    """A fit killed at the start of epoch 3 restarts from the backup: only the
    missing epochs run, and the weights equal an uninterrupted fit's."""
    import keras
    from remotetrimmer_tf import training

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 8, 8, 3)).astype("float32")
    y = (x[..., 0].mean(axis=(1, 2)) > 0).astype("int32")
    recipe = dict(epochs=5, batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-3,
                  schedule="onecycle", warmup_fraction=0.2, loss="ce",
                  augment="none", seed=3)

    def tiny():
        keras.utils.set_random_seed(0)
        inp = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
        h = keras.layers.GlobalAveragePooling2D()(h)
        return keras.Model(inp, keras.layers.Dense(2)(h))

    class KillAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise _Interrupt("killed")

    full = tiny()
    h_full = training.fit(full, (x, y), recipe=recipe, verbose=0)
    assert len(h_full["loss"]) == 5

    backup = tmp_path / "backup"
    model = tiny()
    with pytest.raises(_Interrupt):
        training.fit(model, (x, y), recipe=recipe, verbose=0, backup_dir=backup,
                     callbacks=[KillAt()])
    meta = json.loads((backup / "training_metadata.json").read_text())
    assert meta["epoch"] == 3
    restarted = tiny()   # a fresh process would start from the initial model
    h = training.fit(restarted, (x, y), recipe=recipe, verbose=0, backup_dir=backup)
    assert len(h["loss"]) == 2              # epochs 4 and 5 only: none repeated
    np.testing.assert_allclose(h["loss"], h_full["loss"][3:], rtol=1e-5, atol=1e-6)
    diff = max(float(np.abs(a - b).max()) for a, b in
               zip(restarted.get_weights(), full.get_weights()))
    assert diff < 1e-5, diff
    assert not (backup / "training_metadata.json").exists()   # deleted at the end


@pytest.mark.slow
def test_killed_worker_restarted_resumes_from_the_backup(mw_assets, tmp_path):
    """SIGKILL one of 2 workers during fine-tuning: the chief stops with an
    error (no hang); the same command restarted on both resumes at the
    backed-up epoch (none repeated, none redone from scratch) and finishes."""
    import time
    epochs = 30
    args = _args(mw_assets, "--strategy=multi_worker", f"--config.finetune.epochs={epochs}")
    homes = [tmp_path / "host0", tmp_path / "host1"]
    for h in homes:
        h.mkdir()

    def start():
        ports = _free_ports(2)
        return [_cli(args, homes[i], _env(TF_CONFIG=_tf_config(ports, i),
                                          REMOTETRIMMER_CLUSTER_TIMEOUT="120"))
                for i in range(2)]

    run = homes[0] / "run"
    meta = run / "logs" / "finetune" / "backup" / "training_metadata.json"
    procs = start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if json.loads(meta.read_text())["epoch"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        assert procs[0].poll() is None, _communicate(procs[0], 10)[1][-3000:]
        time.sleep(0.2)
    else:
        for p in procs:
            p.kill()
        pytest.fail("fine-tuning never reached epoch 2")
    procs[1].kill()
    _communicate(procs[1], 60)
    _, err = _communicate(procs[0], 180)
    assert procs[0].returncode != 0
    assert not (run / "model_finetuned.keras").exists()
    backed_up = json.loads(meta.read_text())["epoch"]
    assert 2 <= backed_up < epochs

    procs = start()   # the same command again, on both workers
    outs = [_communicate(p, 280) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    ledger = json.loads((run / "stages.json").read_text())
    assert "finetune" in ledger["stages"] and (run / "report.json").exists()
    # the resumed fit ran only the epochs after the backup
    assert ledger["stages"]["finetune"]["info"]["history"]["epochs_run"] == epochs - backed_up
    logged = [int(l.split(",")[0]) for l in
              (run / "logs" / "finetune" / "log.csv").read_text().splitlines()[1:]]
    assert logged == sorted(set(logged)) and logged[-1] == epochs - 1  # none repeated
    assert list(homes[1].iterdir()) == []


@pytest.mark.slow
def test_strategy_after_tensorflow_started_is_one_clear_error(tmp_path):
    """The bug this issue started from: collectives configured after TF ran an
    op. get_strategy says so in one line instead of TF's RuntimeError."""
    code = ("import tensorflow as tf\n"
            "tf.constant(1.0) + 1.0\n"
            "from remotetrimmer_tf.training import strategy\n"
            "try:\n"
            "    strategy.get_strategy('multi_worker')\n"
            "except strategy.StrategyError as e:\n"
            "    print('ERROR', e)\n")
    env = _env(TF_CONFIG=_tf_config(_free_ports(1), 0), KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "ERROR --strategy=multi_worker must be created before TensorFlow" \
        in proc.stdout, proc.stderr[-2000:]


def test_chief_state_travels_to_a_worker_folder(tmp_path):
    """What the chief sends before a training stage: its ledger, the finished
    stages' artifacts and logs/<stage>/, nothing else; unpacking replaces the
    worker folder's old contents."""
    from remotetrimmer_tf.pipeline import workers
    from remotetrimmer_tf.pipeline.workdir import Workdir
    wd = Workdir(tmp_path / "chief")
    wd.start({"a": 1}, "cfg")
    wd.write_json("kept.json", {"0": [1, 2]})
    wd.write_text("model_pruned.keras", "weights")
    wd.mark_finished("prune", "k1", ["model_pruned.keras", "kept.json"], {}, 0.1)
    wd.write_text("unrelated.txt", "not an artifact")
    (wd / "logs" / "finetune" / "backup").mkdir(parents=True)
    (wd / "logs" / "finetune" / "backup" / "training_metadata.json").write_text('{"epoch": 2}')
    (wd / "logs" / "train").mkdir()
    (wd / "logs" / "train" / "log.csv").write_text("old")
    blob = workers._pack(wd, {"action": "stage", "stage": "finetune"}, "finetune")
    folder = tmp_path / "worker"
    folder.mkdir()
    (folder / "stale.keras").write_text("from an earlier stage")
    message = workers._unpack(blob, str(folder))
    assert message == {"action": "stage", "stage": "finetune"}
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == ["kept.json", "logs/finetune/backup/training_metadata.json",
                   "model_pruned.keras", "stages.json"]
    assert Workdir(folder).finished("prune", "k1") is not None
