"""How a thread of the listener dies: loudly. :func:`guarded` wraps a thread's target so that
an unexpected exception reaches its owner, and :func:`log_crash` is the one log line (with
the traceback) that says so. Deciding what a crash means (stop, hand back) is the daemon's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("s3s3.listen")


def log_crash(name: str, exc: BaseException) -> None:
    """The one log line, with the traceback, for a thread that died of ``exc``."""
    log.error(
        "thread %s crashed: %s: %s; s3s3listen stops so that its supervisor restarts it",
        name,
        type(exc).__name__,
        exc,
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def guarded(
    fn: Callable[..., None], on_crash: Callable[[str, BaseException], None]
) -> Callable[..., None]:
    """``fn`` as a thread target whose death is reported to ``on_crash``, never silent."""

    def run(*args: object) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # whatever it is, the thread is gone: say so
            on_crash(threading.current_thread().name, exc)

    return run
