"""Waiting on state with a deadline, and managing subprocesses."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.02,
               message: str = "condition") -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message}; last: {result!r}")
        time.sleep(interval_s)


async def eventually_async(check: Callable[[], Awaitable[T]], timeout_s: float = 10.0,
                           interval_s: float = 0.02, message: str = "condition") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message}; last: {result!r}")
        await asyncio.sleep(interval_s)


class ProcessGroup:
    """Subprocesses of one test, with their output in files for failure reports."""

    def __init__(self, env: dict[str, str], logdir: Path, cwd: Path, python: str) -> None:
        self.env = env
        self.logdir = logdir
        self.cwd = cwd
        self.python = python
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log_path = self.logdir / f"proc{len(self.procs)}-{args[1] if len(args) > 1 else args[0]}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([self.python, *args], cwd=self.cwd, env={**self.env, **(env or {})},
                                    stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((proc, log_path))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        for candidate, path in self.procs:
            if candidate is proc:
                return path.read_text(errors="replace")
        raise KeyError(proc)

    def run(self, *args: str, timeout_s: float = 30.0, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run to completion, capturing output."""
        return subprocess.run([self.python, *args], cwd=self.cwd, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout_s)

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
