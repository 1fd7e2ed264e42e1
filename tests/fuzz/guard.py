"""The contract every fuzzed call is held to.

A call either returns (and the caller then checks the output is finite and
consistently shaped) or raises :class:`ValueError` / :class:`TypeError`.
Anything else (``RuntimeError``, ``IndexError``, ``AssertionError``,
``KeyError``, ``MemoryError``, a hang) fails the case with the exception's
type and message, so the report can be routed to the file that must change.

Memory is bounded with a temporary soft ``RLIMIT_AS`` (Linux): the address
space may grow by at most ``64 MiB + 50 x`` the input's size during the call.
A reader that trusts a header count and allocates for it then fails with
:class:`MemoryError` instead of taking the machine's memory. Only the soft
limit is lowered and it is restored right after the call; where the limit
cannot be set (other systems) the call runs unbounded. Time is bounded with
``SIGALRM`` (main thread only).
"""
import contextlib
import os
import resource
import signal
import threading
import traceback

import pytest

ALLOWED = (ValueError, TypeError)
MiB = 1 << 20


class CallTimeout(BaseException):
    """Raised by the alarm; a BaseException so that a library's
    ``except Exception`` cannot swallow it."""


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


@contextlib.contextmanager
def memory_budget(extra_bytes: int):
    """Lower the soft address-space limit to (current size + extra_bytes)."""
    now = _vm_size()
    if now < 0:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = now + int(extra_bytes)
    if hard != resource.RLIM_INFINITY and limit > hard:
        limit = hard
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def time_budget(seconds: float):
    if threading.current_thread() is not threading.main_thread() or \
            not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise CallTimeout(f"call took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _where(exc: BaseException) -> str:
    """The innermost frame inside gdl_pyg (or the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}gdl_pyg{os.sep}" in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    path = f.filename
    cut = path.rfind(f"{os.sep}gdl_pyg{os.sep}")
    return f"{path[cut + 1:] if cut >= 0 else os.path.basename(path)}:{f.lineno}"


def _memory_error_in_chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def guarded_call(fn, *args, budget_bytes: int = 64 * MiB, seconds: float = 10.0,
                 **kwargs):
    """Run ``fn(*args, **kwargs)``; return ``(True, result)`` or
    ``(False, exc)`` for an allowed exception; ``pytest.fail`` otherwise."""
    try:
        with time_budget(seconds), memory_budget(budget_bytes):
            return True, fn(*args, **kwargs)
    except ALLOWED as exc:
        cause = _memory_error_in_chain(exc)
        if cause is not None:
            # a reader that wraps every exception still allocated for a header count
            pytest.fail(f"MemoryError at {_where(cause)} (re-raised as {type(exc).__name__}): "
                        f"allocated more than {budget_bytes / MiB:.0f} MiB for this input: "
                        f"{exc}"[:2000], pytrace=False)
        return False, exc
    except MemoryError as exc:
        pytest.fail(f"MemoryError at {_where(exc)}: allocated more than "
                    f"{budget_bytes / MiB:.0f} MiB for this input: {exc}", pytrace=False)
    except CallTimeout as exc:
        pytest.fail(f"timeout at {_where(exc)}: {exc}", pytrace=False)
    except Exception as exc:  # noqa: BLE001 - every other type breaks the contract
        pytest.fail(f"{type(exc).__name__} at {_where(exc)}: {exc}"[:2000], pytrace=False)
