"""Print the event log of a Dagster run: ``python3 tasks.py logs RUN_ID``.

Dagster 1.13 has no ``dagster run logs`` command; this reads the same instance storage.
"""

import sys

import dagster as dg


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 tasks.py logs RUN_ID (see `dagster run list`)", file=sys.stderr)
        return 2
    instance = dg.DagsterInstance.get()
    run = instance.get_run_by_id(argv[0])
    if run is None:
        print(f"no run {argv[0]!r} in {instance.root_directory}", file=sys.stderr)
        return 1
    print(f"Run {run.run_id} of {run.job_name}: {run.status.value}")
    for entry in instance.all_logs(run.run_id):
        step = f" [{entry.step_key}]" if entry.step_key else ""
        kind = entry.dagster_event.event_type_value if entry.dagster_event else "LOG"
        message = entry.user_message or ""
        print(f"{entry.timestamp:.3f} {entry.level}{step} {kind}: {message}".rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
