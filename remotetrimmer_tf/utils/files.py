"""Atomic file writes: a temporary sibling, then ``os.replace``.

Every output of the package (checkpoints, run-folder artifacts, exports,
benchmark results) goes through :func:`atomic_path`, so a crash or an
interrupt never leaves a half-written file under the final name. The
temporary name is ``.tmp-<pid>-<random>-<name>``: it keeps the file's suffix
(Keras insists on ``.keras``) and never looks like a finished artifact
(``pipeline.workdir`` removes such leftovers).

Example:

>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = write_json_atomic(os.path.join(folder, "a.json"), {"x": 1})
>>> json.load(open(path))
{'x': 1}
>>> sorted(os.listdir(folder))
['a.json']
"""
import contextlib
import json
import os
import shutil
import uuid

__all__ = ["temp_sibling", "atomic_path", "replace_atomic", "write_bytes_atomic",
           "write_text_atomic", "write_json_atomic", "remove_quietly", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"


def temp_sibling(path):
    """A fresh temporary path next to ``path`` (same folder, so the rename is
    atomic), not created.

    Example:

    >>> os.path.basename(temp_sibling("/tmp/model.keras")).startswith(".tmp-")
    True
    >>> temp_sibling("/tmp/model.keras").endswith("-model.keras")
    True
    """
    parent, base = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(parent, f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{base}")


def remove_quietly(path):
    """Remove a file or folder if it exists; never raises.

    Example:

    >>> remove_quietly("/nonexistent/file")   # nothing happens
    """
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
    except OSError:
        pass


def replace_atomic(tmp, path):
    """Move the finished ``tmp`` (a file or a folder) to ``path``.

    A file replaces ``path`` in one ``os.replace``. A folder cannot replace a
    non-empty folder in one rename, so an existing ``path`` is first moved
    aside, ``tmp`` renamed in, and the old one removed; if the second rename
    fails the old one is put back.

    Example:

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> tmp = os.path.join(d, "t")
    >>> _ = open(tmp, "w").write("new")
    >>> replace_atomic(tmp, os.path.join(d, "final.txt"))
    >>> sorted(os.listdir(d))
    ['final.txt']
    """
    tmp, path = os.fspath(tmp), os.fspath(path)
    if not (os.path.isdir(tmp) and os.path.isdir(path)):
        os.replace(tmp, path)
        return
    old = temp_sibling(path)
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    remove_quietly(old)


@contextlib.contextmanager
def atomic_path(path, *, directory=False):
    """Yield a temporary path next to ``path``; move it to ``path`` on success.

    The caller writes the temporary path (a file, or a folder with
    ``directory=True``: created empty). On an error or interrupt the
    temporary path is removed and ``path`` is untouched; a body that writes
    nothing is an error. The parent folder is created if needed.

    Args:
        path: the final path (``str`` or path-like).
        directory: create the temporary path as an empty folder.

    Example:

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "out.txt")) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(os.path.join(d, "out.txt")).read()
    'done'
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = temp_sibling(path)
    if directory:
        os.mkdir(tmp)
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise RuntimeError(f"nothing was written to {tmp}")
        replace_atomic(tmp, path)
    finally:
        remove_quietly(tmp)


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` atomically; return ``path``.

    Example:

    >>> import tempfile
    >>> p = write_bytes_atomic(os.path.join(tempfile.mkdtemp(), "b.bin"), b"ab")
    >>> open(p, "rb").read()
    b'ab'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return os.fspath(path)


def write_text_atomic(path, text, encoding="utf-8"):
    """Write ``text`` to ``path`` atomically; return ``path``.

    Example:

    >>> import tempfile
    >>> p = write_text_atomic(os.path.join(tempfile.mkdtemp(), "t.md"), "# hi\\n")
    >>> open(p).read()
    '# hi\\n'
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding=encoding) as f:
            f.write(text)
    return os.fspath(path)


def write_json_atomic(path, obj, *, indent=2, sort_keys=True, **kwargs):
    """Write ``obj`` as JSON (plus a final newline) to ``path`` atomically;
    return ``path``. Extra keywords go to ``json.dump`` (e.g. ``default=``).

    Example: see the module docstring.
    """
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, sort_keys=sort_keys, **kwargs)
            f.write("\n")
    return os.fspath(path)
