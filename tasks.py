#!/usr/bin/env python3
"""Project commands that bootstrap what they need:
`python3 tasks.py demo|test|check|dev|dagster|dg|logs|bench|prod`.

Each command creates `.venv` on first use, installs the project with its pinned
dependencies, and reinstalls only when pyproject.toml changes. The venv's `activate` script
exports what the `dagster` and `dg` commands need, so after `source .venv/bin/activate` they
work as typed from the project root.

Every command runs in its own process group: stopping `tasks.py` (SIGTERM, SIGINT, SIGHUP)
stops the command and everything it started, within seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed-from"
ACTIVATE = VENV / "bin" / "activate"
DAGSTER_HOME = ROOT / ".dagster_home"
INSTANCE_CONFIG = ROOT / "deploy" / "dagster.yaml"

PRODUCTION_CONFIG = ROOT / "deploy" / "production" / "dagster.yaml"
PRODUCTION_WORKSPACE = ROOT / "deploy" / "production" / "workspace.yaml"
PRODUCTION_HOME_ENV = "WEB_ANALYTICS_PRODUCTION_HOME"
PRODUCTION_HOME = ROOT / ".data" / "dagster_production"  # git-ignored, next to the store
# The production instance's PostgreSQL connection (deploy/production/dagster.yaml).
PG_ENV = {
    "DAGSTER_PG_HOST": "the server's host name or address",
    "DAGSTER_PG_PORT": "its port, usually 5432",
    "DAGSTER_PG_USERNAME": "the user Dagster logs in as",
    "DAGSTER_PG_PASSWORD": "that user's password",
    "DAGSTER_PG_DB": "the database holding Dagster's runs, events and schedules",
}

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_GRACE_SECONDS = 10  # a stopped command's group gets this long before SIGKILL
PRODUCTION_STOP_SECONDS = 30  # the webserver and daemon finish in-flight requests and ticks
PRODUCTION_START_SECONDS = 120  # the webserver answers once its code server has loaded

# The start of the warning `dagster job execute` prints on every call (Python matches it
# as a literal prefix of the message).
SUPERSEDED_JOB_EXECUTE = "Function `job_execute_command` is superseded"

# Written by the demo (DEMO_ENVIRONMENT in src/web_analytics/demo.py): its store's URL and the
# first day of its data, so the UI's partitions start where the demo's data does.
DEMO_ENVIRONMENT = ROOT / ".data" / "demo.env"
URL_ENV = "WEB_ANALYTICS_URL"
START_DATE_ENV = "WEB_ANALYTICS_START_DATE"
DEMO_MARK_ENV = "_WEB_ANALYTICS_DEMO"  # set by the activate script when it applied the demo's
# Commands that load the definitions for an operator: they see the demo's store and start.
OPERATOR_COMMANDS = ("dev", "dagster", "dg")

ACTIVATE_BEGIN = "# >>> web-analytics (tasks.py) >>>"
ACTIVATE_END = "# <<< web-analytics (tasks.py) <<<"


def _code_location() -> str:
    """The code location name that `dagster dev` and production give the definitions."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["tool"]["dagster"]["code_location_name"]


def _operator_environment() -> dict[str, str]:
    """What the stock `dagster` CLI needs to work as typed from the project root."""
    # `dagster job execute` runs in process and records no code location; Dagster's UI files a
    # job's runs by this hidden tag, so the CLI's runs appear on the job's page. Click reads
    # DAGSTER_CLI_<COMMAND>_<OPTION> as the option's default (an explicit --tags replaces it).
    repository = f"__repository__@{_code_location()}"
    return {
        "DAGSTER_HOME": str(DAGSTER_HOME),
        "DAGSTER_CLI_JOB_EXECUTE_MODULE_NAME": "web_analytics.definitions",
        "DAGSTER_CLI_JOB_EXECUTE_TAGS": json.dumps({".dagster/repository": repository}),
        # `dagster job execute` warns on every call that `dg launch` supersedes it; the
        # README's commands use it knowingly. Only that one message is silenced.
        "PYTHONWARNINGS": f"ignore:{SUPERSEDED_JOB_EXECUTE}",
    }


def _demo_environment(env: dict[str, str]) -> dict[str, str]:
    """The demo's store and first day, after `tasks.py demo` ran, unless ``env`` names
    another store or a start of its own."""
    try:
        lines = DEMO_ENVIRONMENT.read_text().splitlines()
    except OSError:
        return {}
    demo = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    if env.get(URL_ENV, demo.get(URL_ENV)) != demo.get(URL_ENV) or env.get(START_DATE_ENV):
        return {}
    return {name: demo[name] for name in (URL_ENV, START_DATE_ENV) if name in demo}


# The same rule as _demo_environment, for the shell: read when the venv is activated.
ACTIVATE_DEMO = """\
if [ -f {file} ]; then
    _wa_url="$(sed -n 's/^{url}=//p' {file})"
    if [ "${{{url}:-$_wa_url}}" = "$_wa_url" ] && [ -z "${{{start}:-}}" ]; then
        export {url}="$_wa_url"
        export {start}="$(sed -n 's/^{start}=//p' {file})"
        export {mark}=1
    fi
    unset _wa_url
fi
"""


def _bootstrap() -> None:
    if not PYTHON.exists():
        print("Creating .venv ...", flush=True)
        venv.create(VENV, with_pip=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != wanted:
        print("Installing the project and its pinned dependencies into .venv ...", flush=True)
        pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "install", "-e", f"{ROOT}[dev]"], check=True, cwd=ROOT)
        STAMP.write_text(wanted)
    _write_activate_block()


def _write_activate_block() -> None:
    """Make `source .venv/bin/activate` export the operator environment and `deactivate`
    unset it. Rewrites its own block, so it is idempotent and follows changes here."""
    script = ACTIVATE.read_text()
    ours = re.compile(rf"[ \t]*{re.escape(ACTIVATE_BEGIN)}\n.*?{re.escape(ACTIVATE_END)}\n", re.S)
    pristine = ours.sub("", script)
    variables = _operator_environment()
    unset = (
        f"    {ACTIVATE_BEGIN}\n    unset {' '.join(variables)}\n"
        f'    if [ -n "${{{DEMO_MARK_ENV}:-}}" ]; then '
        f"unset {URL_ENV} {START_DATE_ENV} {DEMO_MARK_ENV}; fi\n"
        f"    {ACTIVATE_END}\n"
    )
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())
    patched, found = re.subn(r"^(deactivate \(\) \{\n)", rf"\g<1>{unset}", pristine, flags=re.M)
    if not found:
        raise SystemExit(f"{ACTIVATE} has no deactivate function; recreate it: rm -rf .venv")
    patched += (
        f"{ACTIVATE_BEGIN}\n"
        "# The `dagster` and `dg` commands find the project's instance and code location.\n"
        f"{exports}"
        "# After `python3 tasks.py demo`: the demo's store and the first day of its data.\n"
        + ACTIVATE_DEMO.format(
            file=shlex.quote(str(DEMO_ENVIRONMENT)),
            url=URL_ENV,
            start=START_DATE_ENV,
            mark=DEMO_MARK_ENV,
        )
        + f"{ACTIVATE_END}\n"
    )
    if patched != script:
        ACTIVATE.write_text(patched)


def _apply_instance_config(home: Path, config: Path) -> None:
    """Write the project's instance configuration into a Dagster home, on every start, so an
    edit of the file under deploy/ takes effect at the next start."""
    home.mkdir(parents=True, exist_ok=True)
    header = f"# Written by tasks.py from {config.relative_to(ROOT)} on every start: edit that.\n"
    wanted = header + config.read_text()
    target = home / "dagster.yaml"
    if not target.exists() or target.read_text() != wanted:
        target.write_text(wanted)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    for name, value in _operator_environment().items():
        env.setdefault(name, value)
    if Path(env["DAGSTER_HOME"]).resolve() == DAGSTER_HOME:  # another home is the caller's own
        _apply_instance_config(DAGSTER_HOME, INSTANCE_CONFIG)
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


# --- processes ---------------------------------------------------------------------------


def _group_members(group: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == group and state != "Z":
            members.append(int(entry.name))
    return members


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _stop_groups(groups: list[int], grace: float) -> None:
    """SIGTERM what is left of process groups, SIGKILL it after ``grace`` seconds."""

    def left() -> list[int]:
        return [group for group in groups if _group_members(group)]

    for group in left():
        _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    for group in left():
        _signal_group(group, signal.SIGKILL)
    while left() and time.monotonic() < deadline + 5:
        time.sleep(0.1)


def _default_stop_signals() -> None:
    """In a child before exec: an ignored signal stays ignored across exec (a shell's
    `cmd &` ignores SIGINT), and Dagster maps SIGTERM to the SIGINT handler."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def _foreground_terminal() -> int | None:
    """stdin's terminal if this process owns its foreground, else None."""
    try:
        fd = sys.stdin.fileno()
        return fd if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp() else None
    except (OSError, ValueError):
        return None


def _give_terminal(fd: int, group: int) -> None:
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background tcsetpgrp stops us
    try:
        os.tcsetpgrp(fd, group)
    except OSError:
        pass
    finally:
        signal.signal(signal.SIGTTOU, previous)


def _run(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` in its own process group and return its exit status.

    At a terminal the group gets the terminal, so Ctrl-C and prompts reach the command
    directly. SIGTERM, SIGINT or SIGHUP sent to tasks.py go to the command; whatever of its
    group is still alive STOP_GRACE_SECONDS later, or when the command ends, is stopped."""
    terminal = _foreground_terminal()

    def enter_own_group() -> None:
        os.setpgid(0, 0)
        _default_stop_signals()
        if terminal is not None:
            _give_terminal(terminal, os.getpgrp())

    child = subprocess.Popen(command, cwd=ROOT, env=env, preexec_fn=enter_own_group)
    kill_at: list[float] = []  # set by the first stop signal

    def forward(signum: int, _frame: object) -> None:
        kill_at.append(time.monotonic() + STOP_GRACE_SECONDS)
        # The command's leader shuts its own children down (dagster dev stops the webserver,
        # the daemon and their code servers); the group is cleaned up after it.
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
    try:
        status = None
        while status is None:
            try:
                status = child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if kill_at and time.monotonic() > kill_at[0]:
                    _signal_group(child.pid, signal.SIGKILL)
        _stop_groups([child.pid], grace=2 if kill_at else STOP_GRACE_SECONDS)
    finally:
        if terminal is not None:
            _give_terminal(terminal, os.getpgrp())
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return status if status >= 0 else 128 - status


# --- production ----------------------------------------------------------------------------


def _production_home() -> Path:
    return Path(os.environ.get(PRODUCTION_HOME_ENV) or PRODUCTION_HOME).resolve()


def _production_services(home: Path, host: str, port: int) -> dict[str, list[str]]:
    bin_dir = VENV / "bin"
    workspace = ["-w", str(PRODUCTION_WORKSPACE)]
    return {
        "webserver": [
            str(bin_dir / "dagster-webserver"),
            "-h",
            host,
            "-p",
            str(port),
            *workspace,
        ],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", *workspace],
    }


def _pid_file(home: Path, service: str) -> Path:
    return home / "services" / f"{service}.pid"


def _log_file(home: Path, service: str) -> Path:
    # Not $DAGSTER_HOME/logs: Dagster's telemetry uploader moves that folder's files away.
    return home / "services" / f"{service}.log"


def _running_pid(home: Path, service: str) -> int | None:
    """The pid in the service's pid file if that process is alive and is a Dagster one."""
    try:
        pid = int(_pid_file(home, service).read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"dagster" in cmdline and _group_members(pid) else None


def _server_url(home: Path) -> str | None:
    try:
        return _pid_file(home, "webserver").read_text().split()[1]
    except (OSError, IndexError):
        return None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# Run once before the services start: the storage's tables are created by one process, not
# raced by two, and the `clickhouse` pool gets the configured default limit before the first
# queued runs arrive (a pool the queue has never seen limits nothing in its first pass).
PREPARE_INSTANCE = """
import dagster as dg
from web_analytics.orchestration.assets import CLICKHOUSE_POOL
with dg.DagsterInstance.get() as instance:
    instance.event_log_storage.initialize_concurrency_limit_to_default(CLICKHOUSE_POOL)
"""


def _prod_start(home: Path, host: str, port: int) -> int:
    missing = [name for name in PG_ENV if not os.environ.get(name)]
    if missing:
        print("The production instance's PostgreSQL storage needs:", file=sys.stderr)
        for name in missing:
            print(f"  export {name}=...  # {PG_ENV[name]}", file=sys.stderr)
        return 2
    running = [s for s in ("webserver", "daemon") if _running_pid(home, s)]
    if running:
        print(
            f"Already running in {home}: {', '.join(running)}; `python3 tasks.py prod stop` first.",
            file=sys.stderr,
        )
        return 1
    _apply_instance_config(home, PRODUCTION_CONFIG)
    env = _environment()
    env["DAGSTER_HOME"] = str(home)
    prepared = subprocess.run(
        [str(PYTHON), "-c", PREPARE_INSTANCE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if prepared.returncode != 0:
        error = "\n".join(prepared.stderr.strip().splitlines()[-5:])
        print(f"Could not open the instance in {home}:\n{error}", file=sys.stderr)
        return 1
    (home / "services").mkdir(exist_ok=True)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    for service, command in _production_services(home, host, port).items():
        with open(_log_file(home, service), "ab") as log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopping it stops its code servers
                preexec_fn=_default_stop_signals,
            )
        _pid_file(home, service).write_text(
            f"{process.pid} {url}\n" if service == "webserver" else f"{process.pid}\n"
        )
    try:
        return _wait_until_serving(home, url)
    except KeyboardInterrupt:  # Ctrl-C while starting: stop what was started
        _prod_stop(home)
        return 130


def _wait_until_serving(home: Path, url: str) -> int:
    deadline = time.monotonic() + PRODUCTION_START_SECONDS
    while time.monotonic() < deadline:
        dead = [s for s in ("webserver", "daemon") if not _running_pid(home, s)]
        if dead:
            print(f"The {' and '.join(dead)} exited; its log:", file=sys.stderr)
            for service in dead:
                print(_tail(_log_file(home, service)), file=sys.stderr)
            _prod_stop(home)
            return 1
        if _answers(url):
            print(f"Dagster UI: {url} (DAGSTER_HOME={home})")
            print(f"Logs: {_log_file(home, 'webserver')}, {_log_file(home, 'daemon')}")
            return 0
        time.sleep(1)
    print(f"{url} did not answer in {PRODUCTION_START_SECONDS} s; stopping.", file=sys.stderr)
    print(_tail(_log_file(home, "webserver")), file=sys.stderr)
    _prod_stop(home)
    return 1


def _prod_stop(home: Path) -> int:
    running = {service: _running_pid(home, service) for service in ("webserver", "daemon")}
    _stop_groups([pid for pid in running.values() if pid is not None], PRODUCTION_STOP_SECONDS)
    for service, pid in running.items():
        if pid is not None:
            print(f"Stopped the {service} (process group {pid}).")
        _pid_file(home, service).unlink(missing_ok=True)
    return 0


def _prod_status(home: Path) -> int:
    running = 0
    for service in ("webserver", "daemon"):
        pid = _running_pid(home, service)
        running += pid is not None
        state = f"running (process group {pid})" if pid else "stopped"
        print(f"{service:<9} {state}; log {_log_file(home, service)}")
    url = _server_url(home)
    if url and _running_pid(home, "webserver"):
        print(f"Dagster UI: {url} ({'answering' if _answers(url) else 'not answering'})")
    return 0 if running == 2 else 3


def _prod(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 tasks.py prod",
        description=(
            "Run the production deployment: dagster-webserver and dagster-daemon as separate "
            "processes on deploy/production (PostgreSQL storage from $DAGSTER_PG_*). "
            f"DAGSTER_HOME is ${PRODUCTION_HOME_ENV} (default .data/dagster_production)."
        ),
    )
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--host", default="127.0.0.1", help="webserver address (start)")
    parser.add_argument("--port", type=int, default=3000, help="webserver port (start)")
    args = parser.parse_args(argv)
    home = _production_home()
    if args.action == "start":
        return _prod_start(home, args.host, args.port)
    if args.action == "stop":
        return _prod_stop(home)
    return _prod_status(home)


COMMANDS = {
    "demo": [str(PYTHON), "-m", "web_analytics.demo"],
    "test": [str(PYTHON), "-m", "pytest"],
    "dev": [str(VENV / "bin" / "dagster"), "dev"],
    "dagster": [str(VENV / "bin" / "dagster")],
    "dg": [str(VENV / "bin" / "dg")],
    "logs": [str(PYTHON), "-m", "web_analytics.run_logs"],
    "bench": [str(PYTHON), str(ROOT / "bench" / "run.py")],
    # Lint, format and type checks; any finding fails the command.
    "check": [
        "/bin/sh",
        "-c",
        f"'{VENV}/bin/ruff' check . && '{VENV}/bin/ruff' format --check . "
        f"&& '{VENV}/bin/mypy' src tests",
    ],
}


USAGE = (
    f"usage: python3 tasks.py {{{'|'.join(COMMANDS)}}} [args...]\n"
    "       python3 tasks.py prod {start|stop|status} [--host HOST] [--port PORT]"
)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in [*COMMANDS, "prod"]:
        print(USAGE, file=sys.stderr)
        return 2
    _bootstrap()
    if argv[0] == "prod":
        return _prod(argv[1:])
    env = _environment()
    if argv[0] in OPERATOR_COMMANDS:
        env.update(_demo_environment(env))
    return _run([*COMMANDS[argv[0]], *argv[1:]], env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
