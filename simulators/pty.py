"""A virtual RS-485 line: two linked ptys made by `socat` (one end for the simulator, one for the gateway).

A pty ignores the baud rate, so a line runs far faster than a real 9,600-baud one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

SOCAT = "/usr/bin/socat"


class PtyPair:
    """`socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`; `start()` returns (A, B) once both exist."""

    def __init__(self, directory: str | Path | None = None, name: str = "tty") -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgegw-pty-")
            directory = self._tmp.name
        self.gateway_end = str(Path(directory) / f"{name}-gateway")
        self.device_end = str(Path(directory) / f"{name}-devices")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 5.0) -> tuple[str, str]:
        """Start socat; (the gateway's end, the simulator's end). RuntimeError with the reason if it cannot."""
        binary = SOCAT if os.access(SOCAT, os.X_OK) else shutil.which("socat")
        if binary is None:
            raise RuntimeError("socat not found: install the Debian package 'socat' (apt-get install socat)")
        a, b = Path(self.gateway_end), Path(self.device_end)
        self.proc = subprocess.Popen(
            [binary, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while not (a.exists() and b.exists()):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"socat exited with {self.proc.returncode}: {err[-500:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"socat did not create the pty pair within {timeout:g} s")
            time.sleep(0.01)
        return self.gateway_end, self.device_end

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            if proc.stderr is not None:
                proc.stderr.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> tuple[str, str]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
