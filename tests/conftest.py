"""Shared fixtures: every test gets its own data folder, so tests never share a spool or a warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipelines.settings import Paths, configure_tools

CLI = str(Path(sys.executable).with_name("segment-accounts"))

configure_tools()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("SEGMENT_ACCOUNTS_DATA", str(folder))
    monkeypatch.delenv("SEGMENT_ACCOUNTS_REGISTRY", raising=False)  # the registry in that folder too
    return folder


@pytest.fixture
def paths(data_dir: Path) -> Paths:
    return Paths(data_dir)


def target_env(data: Path, target: str) -> dict[str, str]:
    """A child process's environment to run the project on ``target`` with its data folder at ``data``.

    (Telemetry is already off: configure_tools above set it in this process's environment.)
    """
    env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(data), SEGMENT_ACCOUNTS_TARGET=target, DO_NOT_TRACK="1")
    env["SPARK_LOCAL_IP"] = "127.0.0.1"  # Spark binds the loopback, not whatever the host name resolves to
    env.pop("SEGMENT_ACCOUNTS_RAW_SCHEMA", None)  # the profile's default raw schema, whatever the caller set
    return env


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli(data_dir: Path) -> RunCli:
    """The installed console script in a child process, as a user or a scheduler runs it."""

    def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, SEGMENT_ACCOUNTS_DATA=str(data_dir))
        result = subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"segment-accounts {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    return run
