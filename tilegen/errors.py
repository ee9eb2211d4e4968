"""Failures as one line: the exception types tilegen raises, and the one formatter that turns any
exception into (exit code, one line) for the command line.

    UserError      bad input or an unusable environment; the message says what to do   exit 2
    Interrupted    Ctrl-C, SIGTERM or SIGHUP; the message says what was kept and how to
                   continue                                          exit 130, 143 or 129

Everything else a command can meet is classified by `describe` (a full disk, a read-only folder,
memory that ran out, an overflowing size) so that no expected failure ends in a traceback.
"""

from __future__ import annotations

import errno
import signal
import threading

EXIT_USER = 2
EXIT_INTERRUPTED = 130
EXIT_BUG = 1
# What `kill`, `timeout`, systemd, CI and cluster schedulers send, and a closed terminal: each
# stops a command the way Ctrl-C does, with exit code 128 + the signal's number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_ctrl_c = threading.Event()
_last_signal = [signal.SIGINT]


def remember_ctrl_c() -> None:
    """From now on Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt (as Ctrl-C always did) and
    are also remembered, for `raise_if_interrupted`: a KeyboardInterrupt raised where Python
    ignores exceptions (a finaliser, a callback) is lost, and once in the test suite a synth ran
    on for minutes."""

    def handler(signum, frame):
        _ctrl_c.set()
        _last_signal[0] = signum
        signal.default_int_handler(signum, frame)

    _ctrl_c.clear()
    _last_signal[0] = signal.SIGINT
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a stop signal came since `remember_ctrl_c` (long loops call
    it)."""
    if _ctrl_c.is_set():
        raise KeyboardInterrupt


def interrupted_code() -> int:
    """The exit code of a command stopped by the last signal: 130, 143 (SIGTERM), 129 (SIGHUP)."""
    return 128 + int(_last_signal[0])


def _signal_named(line: str) -> str:
    """'interrupted: ...' says which signal stopped the command, when it was not Ctrl-C."""
    sig = _last_signal[0]
    if sig == signal.SIGINT or not line.startswith("interrupted"):
        return line
    return f"interrupted by {signal.Signals(sig).name}" + line[len("interrupted") :]


# Lines some libraries put first that say nothing about the problem itself.
_NOISE = ("Weights only load failed", "Check the documentation", "Please file an issue")


class UserError(Exception):
    """Bad input or an unusable environment: the message says what is wrong and what to do."""


class Interrupted(UserError):
    """Ctrl-C: the message says what was kept and how to continue."""


def one_line(e: BaseException | str, limit: int = 200) -> str:
    """The first informative line of an exception's message, at most `limit` characters."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(_NOISE)] or lines
    line = lines[0] if lines else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def os_error_text(e: OSError, path: object = None) -> str:
    """'cannot write PATH: no space left on device (free some space ...)' and the like."""
    where = path or e.filename or "a file"
    reason = (e.strerror or one_line(e)).rstrip(".")
    code = e.errno
    if code is None and "requested and" in reason:  # tifffile's short write: the disk is full
        reason, code = f"no space left on device ({reason})", errno.ENOSPC
    hint = {
        errno.ENOSPC: "; free some space, then rerun the same command",
        errno.EDQUOT: "; free some space, then rerun the same command",
        errno.EROFS: "; choose an output folder you can write",
        errno.EACCES: "; choose an output folder you can write",
        errno.EPERM: "; choose an output folder you can write",
    }.get(code, "")
    return f"cannot use {where}: {reason[:1].lower() + reason[1:]}{hint}"


def describe(e: BaseException) -> tuple[int, str]:
    """(exit code, one line without the 'tilegen: ' prefix) for any exception a command raised."""
    if isinstance(e, Interrupted):
        return interrupted_code(), _signal_named(one_line(e, 400))
    if isinstance(e, KeyboardInterrupt):
        return interrupted_code(), _signal_named("interrupted before any output was written")
    if isinstance(e, UserError | ValueError | FloatingPointError):
        return EXIT_USER, "error: " + one_line(e, 400)
    if isinstance(e, OSError):
        return EXIT_USER, "error: " + os_error_text(e)
    if isinstance(e, MemoryError | OverflowError):
        return EXIT_USER, f"error: out of memory ({one_line(e)}): use a smaller size or input"
    text = one_line(e)
    if isinstance(e, RuntimeError) and any(
        s in text for s in ("overflow", "can't allocate memory", "out of memory", "Storage size")
    ):
        return EXIT_USER, f"error: too large for this machine ({text}): use a smaller size"
    return EXIT_BUG, (
        f"internal error ({type(e).__name__}: {text}); please report it. "
        "TILEGEN_DEBUG=1 shows the traceback"
    )
