"""Child processes that run the app in production mode: started early, awaited when a rule needs them.

Production mode (FR108, FR503) and the logging check (FR802) import and start the app in a fresh
interpreter with the production environment set, which takes about as long as importing the app.
Started before the probe run (see ``Rule.background``), a child runs on the other core while the
probe run works in this process, and the rule that reads it usually finds it already finished.

The child's output goes to temporary files, not pipes: nobody reads a pipe while the child runs in
the background, and a child that fills a pipe's buffer would hang until its timeout.

The child imports exactly what the parent imported: the parent's ``sys.path`` goes with it
(:data:`SYS_PATH_ENV`), and the child puts it first (:func:`restore_parent_sys_path`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO

from pytest_fastapi_rules.coexistence import without_coverage_env

#: The parent's ``sys.path``, so that the child imports exactly what the parent imported.
SYS_PATH_ENV = "PYTEST_FASTAPI_RULES_SYS_PATH"

_UNFINISHED: set[ChildProcess] = set()


@dataclass(frozen=True)
class ChildOutput:
    """How a child ended: its exit code and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


class ChildTimeout(Exception):
    """The child did not finish within its timeout (it was killed); ``stderr`` is what it wrote."""

    def __init__(self, timeout: float, stderr: str) -> None:
        super().__init__(f"the child did not finish within {timeout:g} s")
        self.timeout = timeout
        self.stderr = stderr


class ChildProcess:
    """``python -m <module> <args>`` with ``env`` added to this process's environment, running now.

    The variables through which pytest-cov and coverage.py measure subprocesses are left out unless
    ``count_coverage`` (``fastapi_rules_count_coverage``): the child is the plugin's work.

    ``timeout`` counts from the start: a child started early is not given longer for having been
    awaited late. :meth:`output` waits for it and is safe to call more than once.
    """

    def __init__(
        self, module: str, args: list[str], env: dict[str, str], timeout: float, count_coverage: bool = False
    ) -> None:
        self.timeout = timeout
        self._deadline = time.monotonic() + timeout
        # Closed by _close_files once the child has ended, not at the end of a block.
        self._stdout: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        child_env = {**os.environ, **env, SYS_PATH_ENV: os.pathsep.join(p for p in sys.path if p)}
        if not count_coverage:
            # The child is the plugin's work: pytest-cov/coverage.py must not measure it (coexistence).
            child_env = without_coverage_env(child_env)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=self._stdout,
                stderr=self._stderr,
            )
        except BaseException:
            self._close_files()
            raise
        self._output: ChildOutput | ChildTimeout | None = None
        _UNFINISHED.add(self)

    def output(self) -> ChildOutput:
        """Wait for the child; raises :class:`ChildTimeout` (after killing it) past its deadline."""
        if self._output is None:
            try:
                returncode = self._process.wait(timeout=max(self._deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
                self._output = ChildTimeout(self.timeout, self._read(self._stderr))
            else:
                self._output = ChildOutput(returncode, self._read(self._stdout), self._read(self._stderr))
            self._close_files()
            _UNFINISHED.discard(self)
        if isinstance(self._output, ChildTimeout):
            raise self._output
        return self._output

    def stop(self) -> None:
        """Kill the child if it is still running (nobody will read it: the session is ending)."""
        if self._output is None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._output = ChildTimeout(self.timeout, "")
            self._close_files()
        _UNFINISHED.discard(self)

    @staticmethod
    def _read(stream: IO[bytes]) -> str:
        stream.seek(0)
        return stream.read().decode("utf-8", errors="replace")

    def _close_files(self) -> None:
        self._stdout.close()
        self._stderr.close()


def restore_parent_sys_path() -> None:
    """In the child: put the parent's import path first, so it imports the same app and libraries."""
    entries = [entry for entry in os.environ.get(SYS_PATH_ENV, "").split(os.pathsep) if entry]
    sys.path[:] = entries + [entry for entry in sys.path if entry not in entries]


def stop_unfinished() -> None:
    """Kill every child nobody waited for (a run stopped by ``-x``, or a rule that was not reached)."""
    for child in list(_UNFINISHED):
        child.stop()


def wait_unfinished() -> None:
    """Wait for every child started and not yet read, keeping how each ended for its rule.

    Called before a rule item's timed phases (see ``RuleItem.prepare_shared_work``): the time the
    children take is the session's shared work, not the item's that happens to read them first.
    """
    for child in list(_UNFINISHED):
        # A timeout is remembered: the rule that reads the child reports it.
        with contextlib.suppress(ChildTimeout):
            child.output()
