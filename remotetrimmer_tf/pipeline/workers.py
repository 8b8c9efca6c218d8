"""Several workers, one run folder: the chief writes it, the others follow.

Under `--strategy=multi_worker` every worker runs the same command. The
strategy is created first (`start`), before any stage touches TensorFlow.
Then:

- the chief (`training.strategy.is_chief`) runs the pipeline in the run
  folder as a single process would: ledger, resume, every artifact;
- before each stage that trains (`stages.needs_all_workers`) the chief
  broadcasts the stage's name, the stage keys, its ledger `stages.json`, the
  artifacts of the finished stages (so the pruning plan `kept.json` and the
  pruned model are computed once, on the chief) and `logs/<stage>/` (the
  resume checkpoints and the `BackupAndRestore` backup);
- every other worker unpacks that into a temporary folder of its own, runs
  the same stage there (the collective training steps need every worker),
  and deletes the folder when the chief says the run is over. Nothing else
  is written by a worker, and its `--workdir` is never opened.

All workers check that they read the same data split (a digest of the file
list), and log the digest of the weights each training stage produced, so
a run shows that the workers agree.

Example (two workers on one machine; the same command twice):
  TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:23456", "127.0.0.1:23457"]},
    "task": {"type": "worker", "index": 0}}' \\
  python -m remotetrimmer_tf.prune --strategy=multi_worker --workdir=runs/mw
"""
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile

from remotetrimmer_tf.pipeline.workdir import (LEDGER, PipelineError, Workdir, first_line,
                                               file_digest)

__all__ = ["start", "follow_chief", "leading", "ClusterError"]


class ClusterError(PipelineError):
    """A worker stopped or cannot be reached: one line, exit status 1."""

    exit_code = 1


def _strategy_mod():
    from remotetrimmer_tf.training import strategy as strategy_mod
    return strategy_mod


def start(name, log):
    """Creates the distribution strategy `name` before anything else runs.

    Returns:
      The strategy object (None for "default").

    Raises:
      PipelineError: a strategy the backend does not have, a malformed
        `TF_CONFIG`, workers that do not answer in time (one line each).
    """
    if name in (None, "", "default"):
        return None
    from remotetrimmer_tf.pipeline.quiet import import_keras_quietly
    import_keras_quietly()     # the backend's start-up lines would break one-line errors
    mod = _strategy_mod()
    try:
        if name == "multi_worker":
            kind, cfg = mod.cluster_from_env()
            if cfg is not None:
                peers = [a for job in ("chief", "worker")
                         for a in cfg["cluster"].get(job, ())]
                log(f"[remotetrimmer] multi_worker: waiting for {len(peers)} workers "
                    f"({', '.join(peers)}; at most {mod._timeout_s()} s)")
            elif kind == "slurm":
                log("[remotetrimmer] multi_worker: waiting for the workers of the "
                    "Slurm job")
        strategy = mod.get_strategy(name)
    except ValueError as e:
        if name != "tpu":      # our own one-line messages (TF_CONFIG, ...)
            raise PipelineError(first_line(e)) from None
        from remotetrimmer_tf.pipeline.inputs import strategy_error
        raise strategy_error(name, e) from None
    except Exception as e:  # noqa: BLE001 - no TPU, unusable devices...
        from remotetrimmer_tf.pipeline.inputs import strategy_error
        raise strategy_error(name, e) from None
    if mod.is_multi_worker(strategy):
        replicas = getattr(strategy, "num_replicas_in_sync", None)
        log(f"[remotetrimmer] {mod.describe(strategy)}"
            + (f": {replicas} replicas in sync" if replicas else ""))
    return strategy


def needs_workers(strategy):
    """True if this process is one of several workers."""
    return _strategy_mod().is_multi_worker(strategy)


# -------------------------------------------------------------- messages
def _pack(wd, message, stage):
    """A tar (bytes) of `message.json`, the ledger, the finished stages'
    artifacts and `logs/<stage>/` of the chief's run folder."""
    names = []
    if wd is not None and wd.exists(LEDGER):
        names.append(LEDGER)
        for entry in (wd.ledger or {}).get("stages", {}).values():
            names += [a for a in entry.get("artifacts", ()) if wd.exists(a)]
    logdir = wd / "logs" / stage if wd is not None and stage else None
    if logdir is not None and logdir.is_dir():
        names += [str(p.relative_to(wd.path)) for p in sorted(logdir.rglob("*"))
                  if p.is_file() and not p.name.startswith(".tmp-")]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        text = json.dumps(message).encode()
        info = tarfile.TarInfo("message.json")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
        for name in dict.fromkeys(names):
            tar.add(str(wd / name), arcname=f"files/{name}")
    return buf.getvalue()


def _unpack(blob, folder):
    """The message of a tar from `_pack`; its files replace `folder`'s."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        message = json.loads(tar.extractfile("message.json").read().decode())
        for child in os.listdir(folder):
            path = os.path.join(folder, child)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        members = [m for m in tar.getmembers() if m.name.startswith("files/")]
        for m in members:
            m.name = m.name[len("files/"):]
            if m.name.startswith("/") or ".." in m.name.split("/"):
                raise ClusterError(f"multi_worker: the chief sent a bad path {m.name!r}")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(folder, members=members, **kwargs)
    return message


def split_digest(cfg):
    """A digest of the training split's file list and labels (None when the
    data does not come from a folder)."""
    try:
        from remotetrimmer_tf.data.api import split_file_list
        d = cfg.data
        _, files, labels = split_file_list(d.name, "train", data_dir=d.data_dir,
                                           seed=int(d.seed),
                                           val_fraction=float(d.val_fraction))
    except Exception:  # noqa: BLE001 - TFDS or another source: not checked
        return None
    h = hashlib.sha256(json.dumps([list(map(str, files)),
                                   [int(v) for v in labels]]).encode())
    return h.hexdigest()[:16]


def weights_digest(model):
    """sha256 (16 hex digits) of a model's weights, in order."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(str(w.dtype).encode() + str(w.shape).encode())
        h.update(memoryview(w.tobytes()))
    return h.hexdigest()[:16]


def _check_split(run, strategy):
    mod = _strategy_mod()
    if not mod.agree(strategy, split_digest(run.cfg)):
        raise PipelineError(
            f"--config.data.data_dir={run.cfg.data.data_dir}: the workers do not "
            "read the same training split (different files or labels); give "
            "every machine the same data at the same path")


def _log_weights(run, stage, artifacts, strategy, log):
    names = [a for a in artifacts if a.endswith(".keras")]
    if names:
        digest = weights_digest(run.load_model(names[0]))
        log(f"[remotetrimmer] {_strategy_mod().describe(strategy)}: {stage} "
            f"weights sha256 {digest}")


def _lost(e):
    """A ClusterError for an error of a collective (a worker went away)."""
    return ClusterError(
        f"multi_worker: a worker stopped or cannot be reached ({first_line(e)}); "
        "restart every worker with the same command: finished stages are kept "
        "and training resumes from logs/<stage>/backup")


def _is_collective_failure(e):
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    return isinstance(e, (tf.errors.UnavailableError, tf.errors.CancelledError,
                          tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                          tf.errors.InternalError)) or "collective" in str(e).lower()


# ----------------------------------------------------------------- chief
def is_chief(strategy):
    """True for the process that runs the pipeline in the run folder."""
    return strategy is None or _strategy_mod().is_chief(strategy)


class _Leader:
    """What `leading` yields: `attach(run)`, `before(stage)`,
    `after(stage, artifacts)`; all no-ops without several workers."""

    def __init__(self, strategy, log):
        self.strategy, self.log, self.run = strategy, log, None
        self.active = strategy is not None and needs_workers(strategy)
        self.in_stage = False

    def attach(self, run):
        self.run = run

    def before(self, stage):
        from remotetrimmer_tf.pipeline import stages as stages_mod
        if not self.active or not stages_mod.needs_all_workers(self.run, stage):
            return
        self.in_stage = True
        message = {"action": "stage", "stage": stage, "keys": self.run.keys}
        _strategy_mod().broadcast_bytes(self.strategy,
                                        _pack(self.run.wd, message, stage))
        _check_split(self.run, self.strategy)

    def after(self, stage, artifacts):
        if self.active and self.in_stage:
            _log_weights(self.run, stage, artifacts, self.strategy, self.log)
        self.in_stage = False

    def send(self, message):
        _strategy_mod().broadcast_bytes(self.strategy, _pack(None, message, ""))


@contextlib.contextmanager
def leading(strategy, log):
    """The chief's side: yields a `_Leader`; tells the workers when the run
    ends, or why it stopped (when it stopped outside a training stage: inside
    one, the workers see the chief go away)."""
    leader = _Leader(strategy, log)
    try:
        yield leader
    except BaseException as e:
        if leader.active and _is_collective_failure(e):
            raise _lost(e) from None
        if leader.active and not leader.in_stage:
            leader.send({"action": "abort", "error": first_line(e)})
        raise
    if leader.active:
        leader.send({"action": "end"})


# ---------------------------------------------------------------- worker
def follow_chief(cfg, strategy, init_model=None, verbose=2, log=print):
    """A non-chief worker's side of `run_pipeline`: runs the chief's training
    stages in a temporary folder, removed at the end.

    Returns:
      `{"workdir": None, "worker": "worker 2/2 (worker:1)", "ran": [...],
      "skipped": []}`.
    """
    from remotetrimmer_tf.pipeline import stages as stages_mod
    from remotetrimmer_tf.pipeline.run_state import Run
    mod = _strategy_mod()
    who = mod.describe(strategy)
    folder = tempfile.mkdtemp(prefix="remotetrimmer-worker-")
    log(f"[remotetrimmer] {who}: following the chief; temporary folder {folder}")
    ran = []
    try:
        while True:
            try:
                message = _unpack(mod.broadcast_bytes(strategy, b""), folder)
            except Exception as e:  # noqa: BLE001
                if _is_collective_failure(e):
                    raise _lost(e) from None
                raise
            action = message.get("action")
            if action == "end":
                break
            if action == "abort":
                raise PipelineError(f"the chief stopped: {message.get('error')}")
            stage = message["stage"]
            run = Run(cfg, Workdir(folder), init_model=init_model,
                      strategy="multi_worker", verbose=verbose, strategy_object=strategy)
            run.keys = message["keys"]
            _check_split(run, strategy)
            plan = os.path.join(folder, "kept.json")
            got = (f" (the chief's pruning plan kept.json sha256 "
                   f"{file_digest(plan)})" if os.path.exists(plan) else "")
            log(f"[remotetrimmer] {who}: {stage}: running with the chief{got}")
            # seeded as the chief seeds every stage, so both draw the same
            # shuffles (pipeline._run_locked)
            from remotetrimmer_tf.training.strategy import make_deterministic
            make_deterministic(int(cfg.train.get("seed", 0) or 0),
                               kernels=bool(cfg.get("deterministic", True)))
            try:
                artifacts, _ = stages_mod.FUNCTIONS[stage](run)
            except Exception as e:  # noqa: BLE001
                if _is_collective_failure(e):
                    raise _lost(e) from None
                raise
            _log_weights(run, stage, artifacts, strategy, log)
            ran.append(stage)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(f"[remotetrimmer] {who}: done; the chief wrote the run folder")
    return {"workdir": None, "worker": who, "ran": ran, "skipped": []}
