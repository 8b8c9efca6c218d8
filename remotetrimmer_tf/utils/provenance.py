"""Provenance of benchmark results: the commit and command that produced them.

Every file a tool writes under ``tools/results`` starts with (markdown) or
carries (JSON) the exact command and the git commit of the checkout it ran
from, marked ``+dirty`` when the working tree had uncommitted changes.

Example:

>>> info = provenance(["tools/bench_latency.py", "--quick"])
>>> sorted(info)
['command', 'commit']
>>> info["command"]
'python tools/bench_latency.py --quick'
"""
import os
import shlex
import subprocess
import sys

__all__ = ["git_commit", "provenance", "results_header"]


def git_commit(folder=None):
    """``<sha>`` of HEAD of the git checkout holding ``folder`` (default: this
    package), ``<sha>+dirty`` with uncommitted changes to tracked files, or
    ``"unknown"`` outside a checkout / without git.

    Example:

    >>> c = git_commit()
    >>> c == "unknown" or len(c.split("+")[0]) == 40
    True
    """
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "") if sha else "unknown"


def provenance(argv=None):
    """``{"command": ..., "commit": ...}`` for a results file.

    Args:
        argv: the tool's ``sys.argv`` (default: the running one).
    """
    argv = list(sys.argv if argv is None else argv)
    return {"command": "python " + " ".join(shlex.quote(a) for a in argv),
            "commit": git_commit()}


def results_header(argv=None):
    """The two lines a markdown results file starts with (command, commit).

    Example:

    >>> results_header(["tools/x.py"]).splitlines()[0]
    'Command: `python tools/x.py`'
    """
    info = provenance(argv)
    return f"Command: `{info['command']}`\nCommit: `{info['commit']}`\n"
