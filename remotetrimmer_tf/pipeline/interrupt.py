"""SIGINT / SIGTERM as a clean stop between two Python steps.

`signals_as_interrupts()` turns both signals into an `Interrupted` exception
(a `KeyboardInterrupt`) raised in the main thread, so the running stage
unwinds: its temporary files are removed by the atomic writers, the files it
had already renamed into place are discarded, and the ledger keeps only the
stages that finished. The CLI then prints one line and exits 128 + signal
(130 for Ctrl-C, 143 for SIGTERM).

Example:
  with signals_as_interrupts():
      run_stages()
"""
import contextlib
import signal
import threading


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal; `stage` names the stage it was in."""

    def __init__(self, signum=signal.SIGINT, stage=None):
        super().__init__(signum)
        self.signum = int(signum)
        self.stage = stage

    @property
    def exit_code(self):
        return 128 + self.signum


@contextlib.contextmanager
def signals_as_interrupts():
    """Raises `Interrupted` on SIGINT/SIGTERM inside the block (main thread
    only; elsewhere the block runs unchanged). A second signal while the
    first is being handled is ignored, so the clean-up finishes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    try:
        yield
    except KeyboardInterrupt as e:
        if not isinstance(e, Interrupted):
            raise Interrupted(signal.SIGINT) from None
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
