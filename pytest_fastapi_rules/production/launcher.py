"""Child processes that run the app in production mode: started early, awaited when a rule needs them.

Production mode (FR108, FR503) and the logging check (FR802) import and start the app in a fresh
interpreter with the production environment set, which takes about as long as importing the app.
Started before the probe run (see ``Rule.background``), a child runs on the other core while the
probe run works in this process, and the rule that reads it usually finds it already finished.

The child's output goes to temporary files, not pipes: nobody reads a pipe while the child runs in
the background, and a child that fills a pipe's buffer would hang until its timeout.

The child imports exactly what the parent imported: the parent's ``sys.path`` goes with it
(:data:`SYS_PATH_ENV`), and the child puts it first (:func:`restore_parent_sys_path`).

A child's own imports (FastAPI, SQLAlchemy, Pydantic and the plugin's discovery: about 0.4 s) come
before any of its work, and the child can only be given its arguments once the app's facts are known
(its environment is chosen from the app's settings). :func:`start_spare` starts the interpreter
earlier, when pytest starts, to do those imports on the other core while this process imports the
rules and the app; the first :class:`ChildProcess` of its module then hands it its arguments and
environment instead of starting another. On a small app the child was the critical path: the
session waited for it after its last probe.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO

from pytest_fastapi_rules.coexistence import without_coverage_env
from pytest_fastapi_rules.production.protocol import AWAIT_RUN_FLAG

#: The parent's ``sys.path``, so that the child imports exactly what the parent imported.
SYS_PATH_ENV = "PYTEST_FASTAPI_RULES_SYS_PATH"

_UNFINISHED: set[ChildProcess] = set()


@dataclass
class _Spare:
    """An interpreter started ahead of need that waits, its imports done, for its run's arguments."""

    process: subprocess.Popen[bytes]
    stdout: IO[bytes]
    stderr: IO[bytes]
    #: The variables an interpreter reads as it starts (``PYTHON*``), as the spare was started with.
    startup_env: dict[str, str]

    def close(self) -> None:
        """End the spare (nobody needs it). Killed, not asked: it may still be importing, and has
        nothing to finish (its stdin's end would stop it only after its imports)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        self.stdout.close()
        self.stderr.close()


#: The spares waiting for a run, by module and whether coverage may measure them.
_SPARES: dict[tuple[str, bool], _Spare] = {}


def _child_env(env: dict[str, str], count_coverage: bool) -> dict[str, str]:
    """This process's environment with ``env`` added, as a child gets it."""
    child_env = {**os.environ, **env, SYS_PATH_ENV: os.pathsep.join(p for p in sys.path if p)}
    if not count_coverage:
        # The child is the plugin's work: pytest-cov/coverage.py must not measure it (coexistence).
        child_env = without_coverage_env(child_env)
    return child_env


def _startup_env(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith("PYTHON")}


def start_spare(module: str, count_coverage: bool = False) -> None:
    """Start ``python -m <module> --await-run`` now, to be handed its run by the next
    :class:`ChildProcess` of ``module`` (see the module's docstring). Once per module."""
    key = (module, count_coverage)
    if key in _SPARES:
        return
    env = _child_env({}, count_coverage)
    stdout: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the child or _Spare.close
    stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, AWAIT_RUN_FLAG],
            env=env,
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=stderr,
        )
    except BaseException:
        stdout.close()
        stderr.close()
        raise
    _SPARES[key] = _Spare(process, stdout, stderr, _startup_env(env))


def stop_spares() -> None:
    """End every spare nobody claimed (the rules that would have used it are not running)."""
    while _SPARES:
        _SPARES.popitem()[1].close()


def _claim_spare(module: str, count_coverage: bool, child_env: dict[str, str]) -> _Spare | None:
    """The waiting spare of ``module``, if it is alive and started as this child would be."""
    spare = _SPARES.pop((module, count_coverage), None)
    if spare is None:
        return None
    if spare.process.poll() is not None or spare.startup_env != _startup_env(child_env):
        spare.close()
        return None
    return spare


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
        child_env = _child_env(env, count_coverage)
        spare = _claim_spare(module, count_coverage, child_env)
        if spare is not None:
            self._process = spare.process
            self._stdout, self._stderr = spare.stdout, spare.stderr
            request = json.dumps({"args": args, "env": child_env, "cwd": os.getcwd()}) + "\n"
            assert spare.process.stdin is not None
            try:
                spare.process.stdin.write(request.encode("utf-8"))
                spare.process.stdin.close()
            except OSError:
                # It died since the check: the child's ending (its stderr) says why.
                pass
        else:
            # Closed by _close_files once the child has ended, not at the end of a block.
            self._stdout = tempfile.TemporaryFile()  # noqa: SIM115
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
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
