#!/usr/bin/env python3
"""Project commands that bootstrap what they need: `python3 tasks.py demo|test|dev|bench`.

Each command creates `.venv` on first use, installs the project with its pinned
dependencies, and reinstalls only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed-from"
DAGSTER_HOME = ROOT / ".dagster_home"


def _bootstrap() -> None:
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("Installing the project and its pinned dependencies into .venv ...", flush=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def _environment() -> dict[str, str]:
    DAGSTER_HOME.mkdir(exist_ok=True)
    instance_config = DAGSTER_HOME / "dagster.yaml"
    if not instance_config.exists():
        shutil.copy(ROOT / "deploy" / "dagster.yaml", instance_config)
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(DAGSTER_HOME))
    # `dagster job execute` needs a code location; this one is found without -m.
    env.setdefault("DAGSTER_CLI_JOB_EXECUTE_MODULE_NAME", "web_analytics.definitions")
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


COMMANDS = {
    "demo": [str(PYTHON), "-m", "web_analytics.demo"],
    "test": [str(PYTHON), "-m", "pytest"],
    "dev": [str(VENV / "bin" / "dagster"), "dev"],
    "dagster": [str(VENV / "bin" / "dagster")],
    "dg": [str(VENV / "bin" / "dg")],
    "logs": [str(PYTHON), "-m", "web_analytics.run_logs"],
    "bench": [str(PYTHON), str(ROOT / "bench" / "run.py")],
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python3 tasks.py {{{'|'.join(COMMANDS)}}} [args...]", file=sys.stderr)
        return 2
    _bootstrap()
    command = [*COMMANDS[argv[0]], *argv[1:]]
    return subprocess.run(command, cwd=ROOT, env=_environment()).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
