"""Runs a few long-lived processes as one unit: when any of them exits, the others are
stopped and the unit exits with its code, so the platform (Cloud Foundry restarts the
instance) notices. SIGTERM and SIGINT are passed on to every process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from types import FrameType

log = logging.getLogger(__name__)
STOP_TIMEOUT_SECONDS = 30


def supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Run {name: argv} until one exits or a stop signal comes; return the exit code."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for name, argv in commands.items():
            processes[name] = subprocess.Popen(argv, env=env, start_new_session=True)
            log.info('started %s (pid %d): %s', name, processes[name].pid, ' '.join(argv))
        while not stopping:
            exited = [(name, p.returncode) for name, p in processes.items() if p.poll() is not None]
            if exited:
                name, code = exited[0]
                log.error('%s exited with code %s: stopping the others', name, code)
                _stop_all(processes)
                return code or 1
            time.sleep(0.5)
        log.info('received signal %d: stopping', stopping[0])
        _stop_all(processes)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_all(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    running = [p for p in processes.values() if p.poll() is None]
    for process in running:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
