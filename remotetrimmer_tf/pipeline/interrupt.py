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

RETRY_S = 0.5
_state = {"signum": None, "acked": False}


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
    _state.update(signum=None, acked=False)

    def handler(signum, frame):
        if _state["acked"]:
            return
        if _state["signum"] is None:
            _state["signum"] = signum
            threading.Thread(target=_redeliver, daemon=True,
                             name="redeliver-signal").start()
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
