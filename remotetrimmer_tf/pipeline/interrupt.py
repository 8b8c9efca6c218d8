"""SIGINT / SIGTERM as a clean stop between two Python steps.

`signals_as_interrupts()` turns both signals into an `Interrupted` exception
(a `KeyboardInterrupt`) raised in the main thread, so the running stage
unwinds: its temporary files are removed by the atomic writers, the files it
had already renamed into place are discarded, and the ledger keeps only the
stages that finished. The CLI then prints one line and exits 128 + signal
(130 for Ctrl-C, 143 for SIGTERM).

An exception raised by a signal handler is *ignored* by Python when it lands
in a finaliser (`__del__`, a weakref callback, garbage collection: frequent
with TensorFlow objects). So the handler also starts a watchdog that
re-delivers the signal every `RETRY_S` seconds until the pipeline calls
`acknowledge()` (it caught the `Interrupted`), and keeps Python from printing
the swallowed one; a signal is never lost.

Example:
  with signals_as_interrupts():
      try:
          run_stage()
      except KeyboardInterrupt:
          acknowledge()
          clean_up()
          raise
"""
import _thread
import contextlib
import signal
import sys
import threading
import time

RETRY_S = 0.5
DEFER_MAX_S = 30.0   # inside deferred(): how long a signal may wait for a batch boundary
_state = {"signum": None, "acked": False, "defer": 0, "since": None}


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; `stage` names the stage it was in."""

    def __init__(self, signum=signal.SIGINT, stage=None):
        super().__init__(signum)
        self.signum = int(signum)
        self.stage = stage

    @property
    def exit_code(self):
        return 128 + self.signum


def acknowledge():
    """The `Interrupted` was caught: stop re-delivering, ignore repeats."""
    _state["acked"] = True


@contextlib.contextmanager
def deferred():
    """Inside this block (a Keras ``fit``) a signal does not raise where it
    lands -- an exception raised inside TensorFlow's tracing or C++ callbacks
    can crash the process (seen: SIGSEGV when Ctrl-C hit ``fit``'s first
    trace) -- but at the next batch boundary, through :class:`BatchBoundary`;
    after ``DEFER_MAX_S`` seconds without one it raises where it lands."""
    _state["defer"] += 1
    try:
        yield
    finally:
        _state["defer"] -= 1


def raise_if_pending():
    """Raise the `Interrupted` a deferred signal is waiting with (if any)."""
    if _state["signum"] is not None and not _state["acked"]:
        raise Interrupted(_state["signum"])


def batch_boundary_callback():
    """A Keras callback that raises a deferred interrupt between batches."""
    import keras

    class BatchBoundary(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise_if_pending()

        def on_test_batch_end(self, batch, logs=None):
            raise_if_pending()

        def on_epoch_end(self, epoch, logs=None):
            raise_if_pending()

    return BatchBoundary()


def _redeliver():
    event = threading.Event()
    while not event.wait(RETRY_S):
        if _state["acked"] or _state["signum"] is None:
            return
        _thread.interrupt_main(_state["signum"])


@contextlib.contextmanager
def signals_as_interrupts():
    """Raises `Interrupted` on SIGINT/SIGTERM inside the block (main thread
    only; elsewhere the block runs unchanged). After `acknowledge()` further
    signals are ignored, so the clean-up finishes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(signum=None, acked=False, since=None)

    def handler(signum, frame):
        if _state["acked"]:
            return
        if _state["signum"] is None:
            _state["signum"] = signum
            _state["since"] = time.monotonic()
            threading.Thread(target=_redeliver, daemon=True,
                             name="redeliver-signal").start()
        if _state["defer"] and time.monotonic() - _state["since"] < DEFER_MAX_S:
            return   # raised by BatchBoundary at the next batch (see deferred())
        raise Interrupted(_state["signum"])

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    old_hook = sys.unraisablehook

    def quiet_hook(unraisable):
        # an Interrupted swallowed by a finaliser: re-delivered, not printed
        if not isinstance(unraisable.exc_value, Interrupted):
            old_hook(unraisable)

    sys.unraisablehook = quiet_hook
    try:
        yield
    except KeyboardInterrupt as e:
        acknowledge()
        if not isinstance(e, Interrupted):
            raise Interrupted(signal.SIGINT) from None
        raise
    finally:
        acknowledge()
        sys.unraisablehook = old_hook
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
