"""Storing events exactly once, so that the per-day summary (kept by a materialized view on
``events``) and the coverage table count an event delivered twice once.

For each batch, the key, version and position of every event go to a session-local table
first. Only the events the store does not hold yet, and corrected copies (same key, other
content, not older than the stored copy), are then inserted into ``events``: one copy per
key, the newest, as ``events`` itself would keep. Before a corrected copy goes in, the summary
rows of the stored copy are taken out. A redelivery therefore changes no count and makes no
day stale, and a load killed half way and run again stores what the first run had not.

On a cluster, rows inserted through the ``Distributed`` table reach their shard in the
background, so an event repeated in the next batch may not be found yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import (
    EVENT_COLUMN_NAMES,
    EVENT_KEY,
    EVENTS,
    LOAD_HELD,
    LOAD_KEYS,
    RETRACTED,
    SOURCE_DAY_SUMMARY,
    load_staging_statements,
    summary_rows,
)

# Columns whose Arrow type cannot be inferred from Python values.
_ARROW_TYPES = {
    "team_id": pyarrow.uint64(),
    "viewport_width": pyarrow.uint32(),
    "viewport_height": pyarrow.uint32(),
}
_KEY_COLUMNS = ("team_id", "timestamp", "session_id", "uuid", "inserted_at")
_KEY = "team_id, day, session_id, uuid"  # EVENT_KEY, with toDate(timestamp) AS day
_KEYED = "*, toDate(timestamp) AS day"
# Every column but the version: two copies with the same content are one event sent twice.
_CONTENT = "cityHash64({})".format(
    ", ".join(name for name in EVENT_COLUMN_NAMES if name != "inserted_at")
)


def _stored(batch: str, columns: str, final: str = "") -> str:
    """``columns`` of the stored copies of the events of ``batch`` (a table or a parenthesised
    subquery); each filter narrows what is read."""
    return (
        f"SELECT {columns} FROM {EVENTS}{final}"
        f" WHERE team_id GLOBAL IN (SELECT DISTINCT team_id FROM {batch})"
        f" AND toDate(timestamp) GLOBAL IN (SELECT DISTINCT toDate(timestamp) FROM {batch})"
        f" AND ({EVENT_KEY}) GLOBAL IN (SELECT {EVENT_KEY} FROM {batch})"
    )


# Positions of the batch's older copies of an event (``events`` keeps the newest version, the
# last of equals), and of the newest copies of events the store holds already.
REPEATED_AND_HELD = f"""
SELECT groupArrayIf(position, NOT newest), groupArrayIf(position, newest AND held)
FROM (
    SELECT
        position,
        row_number() OVER (
            PARTITION BY {EVENT_KEY} ORDER BY inserted_at DESC, position DESC
        ) = 1 AS newest,
        ({EVENT_KEY}) GLOBAL IN ({_stored(LOAD_KEYS, EVENT_KEY)}) AS held
    FROM {LOAD_KEYS}
)
"""
_VERSIONS = f"SELECT {_KEYED}, {_CONTENT} AS content FROM {{source}}"
_HELD_STORED = f"({_stored(LOAD_HELD, '*', ' FINAL')})"
# Positions of the held events whose copy in the batch replaces the stored one.
REPLACING = f"""
SELECT batch.position
FROM ({_VERSIONS.format(source=LOAD_HELD)}) AS batch
INNER JOIN ({_VERSIONS.format(source=_HELD_STORED)}) AS stored USING ({_KEY})
WHERE batch.content != stored.content AND batch.inserted_at >= stored.inserted_at
"""
_REPLACED = f"(SELECT * FROM {LOAD_HELD} WHERE position IN {{replaced:Array(UInt32)}})"
RETRACT_REPLACED = f"""
INSERT INTO {SOURCE_DAY_SUMMARY}
{summary_rows(f"({_stored(_REPLACED, '*', ' FINAL')})", " * " + RETRACTED)}
"""


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: events written (new, or replacing a stored copy), and rows skipped
    because the store held them already or the batch repeated them."""

    stored: int
    replaced: int
    duplicates: int


def _arrow_columns(columns: Mapping[str, Sequence[Any]]) -> dict[str, pyarrow.Array]:
    arrays = {
        name: pyarrow.array(values, _ARROW_TYPES.get(name)) for name, values in columns.items()
    }
    if "inserted_at" not in arrays:
        now = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "us")
        arrays["inserted_at"] = pyarrow.array(np.full(len(arrays["uuid"]), now))
    return arrays


def store_batch(session: Session, columns: Mapping[str, Sequence[Any]]) -> BatchResult:
    """Store a batch of canonical event columns (``EVENT_COLUMN_NAMES``, as numpy arrays or
    lists; ``inserted_at`` may be left out) so that each event is in ``events``, and counted
    in the summary, once."""
    # The embedded store lets one process load at a time; on a server, two loads of the same
    # events at the same moment could both find them new and both store them.
    arrays = _arrow_columns(columns)
    rows = len(arrays["uuid"])
    for statement in load_staging_statements():
        session.command(statement)
    try:
        keys = {name: arrays[name] for name in _KEY_COLUMNS}
        keys["position"] = pyarrow.array(np.arange(rows, dtype=np.uint32))
        session.insert_arrow(LOAD_KEYS, keys)
        [(repeated, held)] = session.query(REPEATED_AND_HELD)
        replaced: list[int] = []
        if held:
            held_rows = {
                name: array.take(pyarrow.array(held, pyarrow.uint32()))
                for name, array in arrays.items()
            }
            held_rows["position"] = pyarrow.array(held, pyarrow.uint32())
            session.insert_arrow(LOAD_HELD, held_rows)
            replaced = [position for (position,) in session.query(REPLACING)]
            if replaced:
                # Killed between this write and the next, a load run again would take the
                # stored copy out twice: only corrected events are exposed to that.
                session.command(RETRACT_REPLACED, {"replaced": replaced})
        skipped = [*repeated, *set(held).difference(replaced)]
        if skipped:
            kept = np.ones(rows, dtype=bool)
            kept[skipped] = False
            mask = pyarrow.array(kept)
            arrays = {name: array.filter(mask) for name, array in arrays.items()}
        if len(skipped) < rows:
            session.insert_arrow(EVENTS, arrays)
    finally:
        session.command(f"TRUNCATE TABLE {LOAD_KEYS}")
        session.command(f"TRUNCATE TABLE {LOAD_HELD}")
    return BatchResult(stored=rows - len(skipped), replaced=len(replaced), duplicates=len(skipped))
