"""Run `vsr serve` / `vsr worker` as real child processes, configured only through VSR_* variables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.ports import wait_until

REPO = Path(__file__).resolve().parents[2]


def settings_env(values: dict[str, object]) -> dict[str, str]:
    """VSR_* environment variables: nested keys joined with '__', lists and dicts as JSON."""
    env: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, dict):
            env.update(settings_env({f"{name}__{sub}": v for sub, v in value.items()}))
        elif isinstance(value, list | dict):
            env[f"VSR_{name.upper()}"] = json.dumps(value)
        elif value is not None:
            env[f"VSR_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@dataclass
class VsrProcess:
    """One `python -m vsr.cli ...` child with its output in `log`."""

    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> VsrProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vsr.cli", *self.args],
                cwd=REPO,
                env={**os.environ, "OMP_NUM_THREADS": "2", **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        code, self.process = self.process.returncode, None
        return code

    def tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )

    def wait_http(self, url: str, timeout: float = 60) -> None:
        def up() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.args[0]} exited:\n{self.tail()}")
            return httpx.get(url, timeout=1).status_code == 200

        try:
            wait_until(up, timeout, f"{self.args[0]} at {url}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.tail()}") from exc
