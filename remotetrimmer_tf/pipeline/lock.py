"""One run per folder: a lock file holding the owner's pid and host.

`RunLock(folder).acquire()` creates `folder/.lock` exclusively (`O_EXCL`).
If the file exists, the process it names is checked: on this host a dead pid
is a stale lock (a run killed with `kill -9`), which is taken over with a
note; a live pid, or a lock from another host (whose pid cannot be checked),
refuses the run in one line naming that process.

Example:
  with RunLock("runs/demo", log=print):
      ...   # nobody else runs stages in runs/demo meanwhile
"""
import json
import os
import socket
import time

from remotetrimmer_tf.pipeline.workdir import PipelineError, utc_timestamp

LOCK_NAME = ".lock"


def pid_alive(pid):
    """True if a process `pid` exists on this host (signal 0 probe)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # exists, owned by someone else
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


class RunLock:
    """An exclusive lock on a run folder (see the module docstring).

    Args:
      folder: the run folder (must exist).
      log: callable for the one-line note when a stale lock is taken over.
    """

    def __init__(self, folder, log=None):
        self.path = os.path.join(os.fspath(folder), LOCK_NAME)
        self.log = log or (lambda line: None)
        self.held = False

    def _owner(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _create(self):
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": utc_timestamp()}
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)

    def acquire(self):
        """Takes the lock.

        Raises:
          PipelineError: another live process holds it.
        """
        for _ in range(3):
            try:
                self._create()
                self.held = True
                return self
            except FileExistsError:
                pass
            owner = self._owner()
            if owner is None:
                # being written by a starting process, or garbage left behind
                time.sleep(0.2)
                owner = self._owner()
                if owner is None:
                    self.log(f"[remotetrimmer] note: {self.path} was unreadable; "
                             "taking the run folder over")
                    self._remove()
                    continue
            pid, host = owner.get("pid"), owner.get("host")
            here = socket.gethostname()
            if pid == os.getpid() and host == here:
                raise PipelineError(
                    f"--workdir: this process already runs in "
                    f"{os.path.dirname(self.path)}; pass another --workdir")
            if host == here and not pid_alive(pid):
                self.log(f"[remotetrimmer] note: taking over the stale lock of "
                         f"process {pid} (no longer running) in "
                         f"{os.path.dirname(self.path)}")
                self._remove()
                continue
            where = f"on {host}" if host != here else "on this machine"
            raise PipelineError(
                f"--workdir={os.path.dirname(self.path)} is in use by process "
                f"{pid} {where} (since {owner.get('started', '?')}); wait for it "
                f"to finish or pass another --workdir (if that process is gone, "
                f"delete {self.path})")
        raise PipelineError(
            f"--workdir: could not lock {self.path}; pass another --workdir")

    def _remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def release(self):
        """Removes the lock file if this process holds it."""
        if self.held:
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                self._remove()
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
