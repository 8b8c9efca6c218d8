"""Imports Keras (and with it the backend) without its start-up chatter.

TensorFlow's C++ start-up lines (``I0000 ... oneDNN custom operations are
on``, ``Could not find cuda drivers``) go straight to file descriptor 2, even
with ``TF_CPP_MIN_LOG_LEVEL=3``, so a one-line error that follows the import
would arrive as three lines. `import_keras_quietly` captures descriptor 2
during the import and replays every line except those informational ones
(warnings and errors are kept).

Example:
  keras = import_keras_quietly()
"""
import os
import re
import sys
import tempfile

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
