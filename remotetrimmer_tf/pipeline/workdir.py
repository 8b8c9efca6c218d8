"""A run folder: atomic artifact writes, a ledger of finished stages, resume.

Every artifact is written under a temporary name in the same folder and then
renamed into place (`os.replace`), so a crash never leaves a file that looks
finished. The ledger `stages.json` is rewritten the same way after each
stage's artifacts are in place; a stage counts as finished only when the
ledger says so AND its artifacts exist, so a rerun resumes after the last
finished stage.

Each stage records a key: a hash of the config sections it depends on,
chained with the key of the stage before it. A rerun with a changed config
therefore reruns the first stage whose inputs changed and everything after it.

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
import shutil
import uuid

LEDGER = "stages.json"
LEDGER_VERSION = 1


class PipelineError(Exception):
    """Bad input to the pipeline: printed as one line, exit status 2.

    The message names the flag, config field or file and says what to do.
    """


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

    # ----------------------------------------------------------------- paths
    def __truediv__(self, name):
        return self.path / name

    def exists(self, name):
        return (self.path / name).exists()

    @contextlib.contextmanager
    def atomic(self, name):
        """Yields a temporary path next to `name`; renames it on success.

        The temporary name starts with `.tmp-` and keeps the suffix (Keras
        insists on `.keras`), so it never looks like a finished artifact. On
        error the temporary file is removed and nothing is renamed.
        """
        final = self.path / name
        tmp = self.path / f".tmp-{uuid.uuid4().hex[:8]}-{name}"
        try:
            yield str(tmp)
            if not tmp.exists():
                raise RuntimeError(f"nothing was written to {tmp}")
            os.replace(tmp, final)
            self.track(name)
        finally:
            if tmp.exists():
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink()

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

    def write_text(self, name, text):
        with self.atomic(name) as tmp:
            pathlib.Path(tmp).write_text(text, encoding="utf-8")

    def write_json(self, name, obj):
        self.write_text(name, json.dumps(obj, indent=2, sort_keys=False,
                                         default=_json_default) + "\n")

    def read_json(self, name):
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def copy_in(self, src, name):
        """Copies a user's file into the run folder (the source is only read)."""
        with self.atomic(name) as tmp:
            shutil.copyfile(src, tmp)

    def clean_temporaries(self):
        """Removes `.tmp-*` leftovers of an interrupted earlier run."""
        for p in self.path.glob(".tmp-*"):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

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
        artifacts are all present; else None."""
        if not self.ledger:
            return None
        entry = self.ledger["stages"].get(stage)
        if not entry or entry.get("key") != key:
            return None
        if not all((self.path / a).exists() for a in entry.get("artifacts", ())):
            return None
        return entry

    def entry(self, stage):
        """The ledger entry of `stage` (finished or not), or None."""
        if not self.ledger:
            return None
        return self.ledger["stages"].get(stage)

    def mark_finished(self, stage, key, artifacts, info, seconds):
        """Records `stage` as finished; call after its artifacts are renamed."""
        self.ledger["stages"][stage] = {
            "key": key,
            "artifacts": list(artifacts),
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
