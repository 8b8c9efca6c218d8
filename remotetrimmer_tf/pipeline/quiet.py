"""What the command line prints: TensorFlow's start-up noise off, errors one line.

- `silence()` imports TensorFlow (when it is the Keras backend) with the
  process's stderr pointed at /dev/null, so the C++ lines printed at import
  (oneDNN notice, ``cuInit`` / CUDA-driver lookups, absl pre-init warnings)
  disappear, and turns TensorFlow's and absl's Python loggers and Python
  warnings down to errors. The CLI calls it unless ``--verbose`` is given.
- `import_keras_quietly()` imports Keras capturing descriptor 2 and replays
  every line except the informational start-up ones (warnings and errors are
  kept), so that a one-line error that follows the import stays one line.
- `progress_verbosity()` is the Keras ``verbose`` for training: a progress
  bar (1) when stdout is a terminal, else one line per epoch (2).

Example:
  from remotetrimmer_tf.pipeline import quiet
  quiet.silence()
  keras = quiet.import_keras_quietly()
  verbose = quiet.progress_verbosity()
"""
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

_INFO = re.compile(r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog)")


def import_keras_quietly():
    """`import keras`, hiding the backend's informational start-up lines."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):   # no real stderr (IDEs, pytest capture)
        import keras
        return keras
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            import keras  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            for line in tmp.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not _INFO.match(line):
                    print(line, file=sys.stderr)
    return sys.modules["keras"]


@contextlib.contextmanager
def stderr_to_devnull():
    """Points file descriptor 2 at /dev/null inside the block (C++ logs too)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):   # no real fd: nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def silence():
    """Quiets TensorFlow's start-up lines, its loggers and Python warnings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "tensorflow" and "tensorflow" not in sys.modules:
        with stderr_to_devnull():
            try:
                import tensorflow  # noqa: F401 - imported for its side effects
            except ImportError:
                return
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            tf.get_logger().setLevel(logging.ERROR)
            tf.autograph.set_verbosity(0)
        except Exception:  # noqa: BLE001 - best effort
            pass
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def progress_verbosity(stream=None):
    """Keras ``verbose``: 1 (progress bar) on a terminal, else 2 (per epoch)."""
    stream = stream or sys.stdout
    try:
        return 1 if stream.isatty() else 2
    except (AttributeError, ValueError):
        return 2
