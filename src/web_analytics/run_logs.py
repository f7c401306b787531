"""Print the event log of a Dagster run: ``python3 tasks.py logs RUN_ID [--follow] [--debug]``.

Dagster 1.13 has no ``dagster run logs`` command; this reads the same instance storage
($DAGSTER_HOME). RUN_ID may be the start of an id, such as the 8 characters the demo prints.
Lines carry an ISO timestamp in UTC and the level name. By default the log is quiet: messages
at INFO and above, and Dagster's milestones (run and step start and end, materializations,
check results) whatever their level; ``--debug`` prints every entry.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import dagster as dg

FOLLOW_POLL_SECONDS = 1.0
MAX_CANDIDATES_SHOWN = 5

# Dagster records its own events at DEBUG; these say how the run went, so they always show.
MILESTONES = frozenset(
    {
        "PIPELINE_ENQUEUED",
        "PIPELINE_STARTING",
        "PIPELINE_START",
        "PIPELINE_SUCCESS",
        "PIPELINE_FAILURE",
        "PIPELINE_CANCELING",
        "PIPELINE_CANCELED",
        "STEP_START",
        "STEP_SUCCESS",
        "STEP_FAILURE",
        "STEP_UP_FOR_RETRY",
        "ASSET_MATERIALIZATION",
        "ASSET_CHECK_EVALUATION",
    }
)


class RunNotFound(Exception):
    """No run, or more than one, matches the id given."""


def find_run(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun:
    """The run with this id, or the only run whose id starts with it."""
    run = instance.get_run_by_id(run_id)
    if run is not None:
        return run
    prefix = run_id.lower()
    matches = [candidate for candidate in instance.get_run_ids() if candidate.startswith(prefix)]
    run = instance.get_run_by_id(matches[0]) if len(matches) == 1 else None
    if run is not None:
        return run
    if not matches:
        raise RunNotFound(
            f"no run {run_id!r} in {instance.root_directory}; `dagster run list` lists them"
        )
    shown = ", ".join(matches[:MAX_CANDIDATES_SHOWN])
    more = (
        f" and {len(matches) - MAX_CANDIDATES_SHOWN} more"
        if len(matches) > MAX_CANDIDATES_SHOWN
        else ""
    )
    raise RunNotFound(
        f"{run_id!r} is the start of {len(matches)} run ids ({shown}{more}); give more of it"
    )


def timestamp(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2024-01-02T03:04:05.678Z``."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def level_number(entry: dg.EventLogEntry) -> int:
    if isinstance(entry.level, int):
        return entry.level
    number = logging.getLevelName(entry.level.upper())  # a name gives its number back
    return number if isinstance(number, int) else logging.INFO


def shown(entry: dg.EventLogEntry, debug: bool) -> bool:
    if debug or level_number(entry) >= logging.INFO:
        return True
    return entry.dagster_event is not None and entry.dagster_event.event_type_value in MILESTONES


def format_entry(entry: dg.EventLogEntry) -> str:
    """One entry: time, level, step, event type (Dagster's events) and message; the lines of a
    multi-line message after the first are indented."""
    level = logging.getLevelName(level_number(entry))
    step = f" [{entry.step_key}]" if entry.step_key else ""
    kind = f" {entry.dagster_event.event_type_value}:" if entry.dagster_event else ""
    first, *rest = (entry.user_message or "").splitlines() or [""]
    lines = [f"{timestamp(entry.timestamp)} {level:<7}{step}{kind} {first}".rstrip()]
    lines += [f"    {line}" for line in rest]
    return "\n".join(lines)


def print_entries(entries: Iterable[dg.EventLogEntry], debug: bool) -> None:
    for entry in entries:
        if shown(entry, debug):
            print(format_entry(entry), flush=True)


def follow(instance: dg.DagsterInstance, run: dg.DagsterRun, debug: bool) -> dg.DagsterRun:
    """Print the run's entries as they are written until the run has ended; the ended run."""
    cursor = None
    while True:
        current = instance.get_run_by_id(run.run_id) or run
        connection = instance.get_records_for_run(run.run_id, cursor=cursor)
        print_entries((record.event_log_entry for record in connection.records), debug)
        cursor = connection.cursor
        if connection.has_more:
            continue
        if current.is_finished:  # read after its status, so its last entries are printed
            return current
        time.sleep(FOLLOW_POLL_SECONDS)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 tasks.py logs",
        description="Print a Dagster run's event log (Dagster 1.13 has no `dagster run logs`).",
    )
    parser.add_argument(
        "run_id", metavar="RUN_ID", help="a run id or its start (see `dagster run list`)"
    )
    parser.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the run ends"
    )
    parser.add_argument("--debug", action="store_true", help="print DEBUG entries too")
    args = parser.parse_args(argv)

    try:
        with dg.DagsterInstance.get() as instance:
            try:
                run = find_run(instance, args.run_id)
            except RunNotFound as error:
                print(error, file=sys.stderr)
                return 1
            print(f"Run {run.run_id} of {run.job_name}: {run.status.value}", flush=True)
            if not args.follow:
                print_entries(instance.all_logs(run.run_id), args.debug)
                return 0
            ended = follow(instance, run, args.debug)
    except KeyboardInterrupt:  # Ctrl-C ends --follow; the run goes on
        return 130
    except BrokenPipeError:  # the reader (`| head`) has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as Python's docs do
        return 0
    print(f"Run {ended.run_id} ended: {ended.status.value}")
    return 0 if ended.status == dg.DagsterRunStatus.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
