"""What the fuzz targets share: the property check and the entry point.

Each target's property is "only the documented error types escape". :func:`expect` runs one
call and lets the documented errors through silently; anything else is a finding. By default
a finding is re-raised, so atheris prints the traceback, libFuzzer saves the input
(``-artifact_prefix``) and the run ends non-zero: what CI wants. With ``FUZZ_KEEP_GOING`` set
to a directory, each distinct finding (exception type and the innermost s3s3 frame) is saved
there once, as ``<sig>.input`` and ``<sig>.txt``, and fuzzing goes on: what a long run
hunting for several defects wants.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
from pathlib import Path

import atheris

_seen: set[str] = set()


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}s3s3{os.sep}" in f.filename] or frames
    last = ours[-1] if ours else None
    where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
    return f"{type(exc).__name__}@{where}"


def _keep(data: bytes, exc: BaseException, where: str) -> None:
    sig = _signature(exc)
    if sig in _seen:
        return
    _seen.add(sig)
    out = Path(os.environ["FUZZ_KEEP_GOING"])
    out.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(sig.encode()).hexdigest()[:12]
    (out / f"{name}.input").write_bytes(data)
    (out / f"{name}.txt").write_text(
        f"{sig}\ncall: {where}\ninput: {data[:300]!r}\n\n"
        + "".join(traceback.format_exception(exc))
    )
    print(
        f"FINDING {sig} in {where}: input saved to {out / name}.input", file=sys.stderr, flush=True
    )


def expect(data: bytes, allowed: tuple[type[BaseException], ...], call, *args, **kwargs):
    """``call(*args, **kwargs)``; documented errors (``allowed``) are the expected outcome."""
    try:
        return call(*args, **kwargs)
    except allowed:
        return None
    except Exception as exc:  # the property: nothing else may escape
        if "FUZZ_KEEP_GOING" not in os.environ:
            raise
        _keep(data, exc, getattr(call, "__qualname__", repr(call)))
        return None


def main(test_one_input, custom_mutator=None) -> None:
    """Hand ``sys.argv`` (libFuzzer flags, corpus directories) to atheris and fuzz."""
    if custom_mutator is None:
        atheris.Setup(sys.argv, test_one_input)
    else:
        atheris.Setup(sys.argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()
