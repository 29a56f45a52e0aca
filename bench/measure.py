"""Running one tool and measuring it: wall time, CPU seconds and peak RSS.

Every tool runs under GNU ``/usr/bin/time``, a small C parent: its ``%U``/``%S`` are the
user and system CPU of the tool and of any child it waited for, and ``%M`` is the tool's
peak RSS. ``ru_maxrss`` survives ``exec``, so measuring a child forked straight from this
Python process would report at least the harness's own size; forked from ``time`` (a couple
of MB) the figure is the tool's. Wall time is measured here, around the whole process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TIME_BIN = "/usr/bin/time"
_TIME_FORMAT = "%e %U %S %M %x"


@dataclass
class Measurement:
    """What one process cost. ``exit_status`` is negative when it died of a signal."""

    argv: list[str]
    exit_status: int
    wall_s: float
    user_s: float | None = None
    sys_s: float | None = None
    maxrss_kb: int | None = None
    log_path: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def cpu_s(self) -> float | None:
        if self.user_s is None or self.sys_s is None:
            return None
        return self.user_s + self.sys_s

    @property
    def peak_rss_mb(self) -> float | None:
        return None if self.maxrss_kb is None else self.maxrss_kb / 1024


def have_time_bin() -> bool:
    return os.access(TIME_BIN, os.X_OK)


def tool_env(
    extra: Mapping[str, str] | None = None,
    *,
    drop_prefixes: Sequence[str] = ("AWS_", "S3S3_", "RCLONE_"),
) -> dict[str, str]:
    """The harness's environment without settings that would change how a tool behaves.

    ``AWS_CA_BUNDLE`` in particular makes rclone fail (LoadCustomCABundleError), and stray
    ``AWS_*`` or ``S3S3_*`` variables would override the generated configurations.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
    env.update(extra or {})
    return env


def run_timed(
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 1800.0,
) -> Measurement:
    """Run ``argv`` to completion; its stdout and stderr go to ``log_path``."""
    proc = TimedProcess(argv, log_path=log_path, env=env, cwd=cwd)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.stop(signal.SIGKILL, grace_s=5.0)
        m = proc.measurement()
        m.notes.append(f"killed after {timeout_s:.0f} s")
        return m
    return proc.measurement()


class TimedProcess:
    """A tool started under ``/usr/bin/time``, for daemons stopped by a signal (listeners)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._time_out = self.log_path.with_suffix(".time")
        self._time_out.unlink(missing_ok=True)
        self.timed = have_time_bin()
        full = (
            [TIME_BIN, "-f", _TIME_FORMAT, "-o", str(self._time_out)] + self.argv
            if self.timed
            else self.argv
        )
        with open(self.log_path, "wb") as log:
            self.began = time.monotonic()
            self.proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env or os.environ),
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )
        self.ended: float | None = None

    def tool_pid(self) -> int | None:
        """The PID of the tool itself (the child of ``time``), None if not (yet) there."""
        if not self.timed:
            return self.proc.pid
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        pids = text.split()
        return int(pids[0]) if pids else None

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout_s: float | None = None) -> int:
        status = self.proc.wait(timeout_s)
        if self.ended is None:
            self.ended = time.monotonic()
        return status

    def stop(self, sig: int = signal.SIGTERM, *, grace_s: float = 30.0) -> None:
        """Signal the tool (not ``time``, which must live to report), then wait; SIGKILL late."""
        if self.running():
            pid = None
            for _ in range(50):  # time forks the tool at once, but not instantly
                pid = self.tool_pid()
                if pid or not self.running():
                    break
                time.sleep(0.01)
            try:
                os.kill(pid or self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.wait()

    def measurement(self) -> Measurement:
        status = self.proc.returncode
        ended = self.ended if self.ended is not None else time.monotonic()
        m = Measurement(
            argv=self.argv,
            exit_status=status if status is not None else -1,
            wall_s=ended - self.began,
            log_path=str(self.log_path),
        )
        if not self.timed:
            m.notes.append(f"{TIME_BIN} missing: no CPU or RSS figures")
            return m
        try:
            lines = self._time_out.read_text().strip().splitlines()
        except OSError:
            lines = []
        for line in lines:
            if line.startswith("Command terminated by signal"):
                m.exit_status = -int(line.split()[-1])
            elif line.startswith("Command exited with non-zero status"):
                continue
        fields = lines[-1].split() if lines else []
        if len(fields) == 5:
            _, user, sys_, maxrss, exit_code = fields
            m.user_s, m.sys_s, m.maxrss_kb = float(user), float(sys_), int(maxrss)
            if m.exit_status >= 0:
                m.exit_status = int(exit_code)
        else:
            m.notes.append(f"could not read {self._time_out}")
        return m


def require_time_bin() -> None:
    """Install GNU time from Debian if it is missing (it is the small parent of every tool)."""
    if have_time_bin():
        return
    if shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "time"], check=False, stdout=subprocess.DEVNULL
        )
