"""A run folder: atomic artifact writes, a ledger of finished stages, resume.

Every artifact is written under a temporary name in the same folder and then
renamed into place (`utils.files.atomic_path`), so a crash never leaves a file that looks
finished. The ledger `stages.json` is rewritten the same way after each
stage's artifacts are in place; a stage counts as finished only when the
ledger says so AND its artifacts exist, so a rerun resumes after the last
finished stage.

Each stage records a key: a hash of the config sections it depends on
(plus the data fingerprint and `--init_model` digest for `train`), chained
with the key of the stage before it, and the sha256 of each artifact. A rerun
with a changed config or data therefore reruns the first stage whose inputs
changed and everything after it; an artifact whose digest no longer matches
(damaged, edited) reruns its stage. Nothing is deleted: the results of
stages that rerun move to `superseded/<UTC timestamp>/`.

Example:
  wd = Workdir("runs/demo")
  with wd.atomic("kept.json") as tmp:
      pathlib.Path(tmp).write_text("{}")
  wd.mark_finished("prune", key="ab12", artifacts=["kept.json"], info={})
"""
import contextlib
import datetime
import hashlib
import json
import os
import pathlib
import re
import shutil
import uuid

from remotetrimmer_tf.utils.files import atomic_path

LEDGER = "stages.json"
LEDGER_VERSION = 1
SUPERSEDED = "superseded"
TMP_PID = re.compile(r"\.tmp-\d+$")


class PipelineError(Exception):
    """Bad input to the pipeline: printed as one line, exit status 2.

    The message names the flag, config field or file and says what to do.
    """


def first_line(e):
    """The first line of an exception's message (its type name if empty), for
    the one-line errors the CLI prints."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def utc_timestamp():
    """UTC time as `YYYYmmdd-HHMMSS`, the default run folder name."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%d-%H%M%S")


def new_run_dir(root="runs"):
    """Creates and returns a fresh `root/<UTC timestamp>[-n]` folder.

    Never returns an existing folder: when the timestamp is taken (two runs in
    one second) a `-1`, `-2`, ... suffix is added.
    """
    root = pathlib.Path(os.path.abspath(os.path.expanduser(str(root))))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PipelineError(
            f"--workdir: cannot create {root}/ ({e.strerror or e}); "
            "pass --workdir=<a writable folder>") from None
    stamp = utc_timestamp()
    for n in range(1000):
        path = root / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as e:
            raise PipelineError(
                f"--workdir: cannot create {path} ({e.strerror or e}); "
                "pass --workdir=<a writable folder>") from None
    raise PipelineError(f"--workdir: no free run folder name under {root}")


def config_hash(obj):
    """Stable short hash of a JSON-able object (config sections, file ids)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_digest(path, chunk=1 << 20):
    """sha256 of a file's bytes (first 16 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Workdir:
    """A run folder with atomic writes and a ledger of finished stages.

    Args:
      path: the folder; created if missing. Must be writable (checked by
        writing and removing a probe file), else `PipelineError`.

    Example:
      wd = Workdir("runs/x")
      wd.finished("train", key)  # -> ledger entry or None
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-probe-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise PipelineError(
                f"--workdir={path} is not a writable folder "
                f"({e.strerror or type(e).__name__}); pass --workdir=<a "
                "writable folder> or fix its permissions") from None
        self.ledger = self._read_ledger()
        self._written = []
        self._superseded = None
        self._digests = {}
        self.why = {}

    # ----------------------------------------------------------------- paths
    def __truediv__(self, name):
        return self.path / name

    def exists(self, name):
        return (self.path / name).exists()

    @contextlib.contextmanager
    def atomic(self, name, track=True):
        """Yields a temporary path next to `name`; renames it on success.

        `utils.files.atomic_path` does the work: the temporary name is
        `.tmp-<pid>-<random>-<name>` and keeps the suffix (Keras insists on
        `.keras`), so it never looks like a finished artifact. On error (or
        an interrupt) the temporary file is removed and nothing is renamed. `name` may hold a subfolder (`inputs/x.keras`).
        `track=False`: the file outlives a failure of the running stage (not
        removed by `discard_written`): a checkpoint a rerun resumes from,
        such as a finished round of `--config.prune.rounds`.
        """
        with atomic_path(self.path / name) as tmp:
            yield tmp
        if track:
            self.track(name)

    def track(self, name):
        """Remembers an artifact written by the running stage (see
        `discard_written`); the ledger itself is not tracked."""
        if name != LEDGER:
            self._written.append(name)

    def begin_stage(self):
        """Starts tracking the files the next stage writes."""
        self._written = []

    def discard_written(self):
        """Removes the files the failed stage had already renamed into
        place, so no artifact of an unfinished stage looks finished."""
        for name in self._written:
            (self.path / name).unlink(missing_ok=True)
        self._written = []

    def write_text(self, name, text, track=True):
        with self.atomic(name, track=track) as tmp:
            pathlib.Path(tmp).write_text(text, encoding="utf-8")

    def write_json(self, name, obj, track=True):
        self.write_text(name, json.dumps(obj, indent=2, sort_keys=False,
                                         default=_json_default) + "\n", track=track)

    def read_json(self, name):
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def copy_in(self, src, name):
        """Copies a user's file into the run folder (the source is only read)."""
        with self.atomic(name) as tmp:
            shutil.copyfile(src, tmp)

    def clean_temporaries(self):
        """Removes the temporary files of an interrupted earlier run.

        Matches every temporary name our writers use, anywhere in the run
        folder: `.tmp-*` (this module, training checkpoints), `*.tmp-<pid>`
        (training state JSON) and `.<name>.*.tmp` (the exporters). Call it
        only while holding the run folder's lock.

        Returns:
          The removed paths, relative to the run folder.
        """
        removed = []
        for p in sorted(self.path.rglob("*")):
            n = p.name
            if not (n.startswith(".tmp-") or TMP_PID.search(n)
                    or (n.startswith(".") and n.endswith(".tmp"))):
                continue
            if not p.exists():
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(str(p.relative_to(self.path)))
        return removed

    # ------------------------------------------------------------ superseded
    def supersede(self, relpath):
        """Moves `relpath` (a file or folder of this run) into
        `superseded/<UTC timestamp>/`, keeping its relative path; one
        timestamp folder per Workdir object. Never deletes anything.

        Returns:
          The new path, or None if `relpath` does not exist.
        """
        src = self.path / relpath
        if not src.exists() and not src.is_symlink():
            return None
        if self._superseded is None:
            self._superseded = new_run_dir(self.path / SUPERSEDED)
        dest = self._superseded / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        return dest

    def supersede_stages(self, stages):
        """Moves the artifacts (and `logs/<stage>`) of the finished `stages`
        into `superseded/` and drops them from the ledger (they will rerun).

        Returns:
          The relative paths that were moved.
        """
        moved = []
        for stage in stages:
            entry = self.entry(stage)
            if entry is None:
                continue
            for name in list(entry.get("artifacts", ())) + [f"logs/{stage}"]:
                if self.supersede(name) is not None:
                    moved.append(name)
            self.ledger["stages"].pop(stage, None)
        if moved or stages:
            self._write_ledger()
        return moved

    def digest(self, name):
        """sha256 (16 hex digits) of an artifact; cached per size + mtime."""
        p = self.path / name
        st = p.stat()
        key = (name, st.st_size, st.st_mtime_ns)
        if key not in self._digests:
            self._digests[key] = file_digest(p)
        return self._digests[key]

    # ---------------------------------------------------------------- ledger
    def _read_ledger(self):
        path = self.path / LEDGER
        if not path.exists():
            return None
        try:
            ledger = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(ledger.get("stages"), dict):
                raise ValueError("no 'stages' mapping")
        except (OSError, ValueError) as e:
            raise PipelineError(
                f"--workdir: {path} is unreadable ({e}); remove it to rerun "
                "every stage, or pass a new --workdir") from None
        return ledger

    def has_ledger(self):
        return self.ledger is not None

    def reload_ledger(self):
        """Reads the ledger from disk again (under the run's lock)."""
        self.ledger = self._read_ledger()
        return self.ledger

    def save_ledger(self):
        """Writes the ledger (atomically)."""
        self._write_ledger()

    @property
    def superseded_dir(self):
        """Where this run moved stale results (None if nothing moved)."""
        return self._superseded

    def start(self, config_dict, config_name):
        """Creates the ledger of a new run (keeps an existing one)."""
        if self.ledger is None:
            self.ledger = {
                "version": LEDGER_VERSION,
                "created": utc_timestamp(),
                "config_name": config_name,
                "config": config_dict,
                "stages": {},
            }
        else:
            self.ledger["config"] = config_dict
            self.ledger["config_name"] = config_name
        self._write_ledger()

    def finished(self, stage, key):
        """The ledger entry of `stage` if it finished with this `key` and its
        artifacts are all present with the digests recorded then; else None.
        `self.why[stage]` then says why (for the log)."""
        self.why.pop(stage, None)
        if not self.ledger:
            return None
        entry = self.ledger["stages"].get(stage)
        if not entry:
            return None
        if entry.get("key") != key:
            self.why[stage] = "its inputs changed"
            return None
        digests = entry.get("sha256") or {}
        for a in entry.get("artifacts", ()):
            p = self.path / a
            if not p.exists():
                self.why[stage] = f"{a} is missing"
                return None
            if a in digests and p.is_file() and self.digest(a) != digests[a]:
                self.why[stage] = (f"{a} changed since {stage} finished "
                                   "(its sha256 differs: damaged or edited)")
                return None
        return entry

    def entry(self, stage):
        """The ledger entry of `stage` (finished or not), or None."""
        if not self.ledger:
            return None
        return self.ledger["stages"].get(stage)

    def mark_finished(self, stage, key, artifacts, info, seconds):
        """Records `stage` as finished; call after its artifacts are renamed."""
        digests = {a: self.digest(a) for a in artifacts
                   if (self.path / a).is_file()}
        self.ledger["stages"][stage] = {
            "key": key,
            "artifacts": list(artifacts),
            "sha256": digests,
            "info": info,
            "seconds": round(float(seconds), 3),
            "finished": utc_timestamp(),
        }
        self._write_ledger()

    def forget(self, stage):
        """Drops a stage from the ledger (it will rerun)."""
        if self.ledger and self.ledger["stages"].pop(stage, None) is not None:
            self._write_ledger()

    def _write_ledger(self):
        self.write_json(LEDGER, self.ledger)


def _json_default(obj):
    """JSON fallback for numpy scalars/arrays, paths and tuples."""
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, (pathlib.Path,)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)
