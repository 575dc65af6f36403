"""Timeline exports for post-mortem authors and the archive: JSON Lines and Markdown.

JSONL has one object per event, in causal order, with every column (``occurred_at`` / ``received_at`` in ISO 8601
UTC) — the same lines the archive stores. Markdown is a readable table-less list grouped by UTC day, one line per
event: ``- 02:47:13 **kubectl** ravi — scaled deploy/checkout to 0``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from chatops.db.pool import json_dumps
from chatops.incidents.model import Incident
from chatops.timeline.events import TimelineEvent

if TYPE_CHECKING:
    from chatops.settings import Settings

__all__ = ["event_dict", "jsonl_line", "markdown_header", "markdown_lines", "parse_jsonl_line", "run_export"]


def event_dict(event: TimelineEvent) -> dict[str, Any]:
    """The event as a JSON-ready dict (the archive's and the JSONL export's line format)."""
    return {
        "id": event.id,
        "incident_id": event.incident_id,
        "type": str(event.type),
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat() if event.received_at else None,
        "actor": event.actor,
        "source": event.source,
        "summary": event.summary,
        "payload": dict(event.payload),
        "dedup_key": event.dedup_key,
    }


def jsonl_line(event: TimelineEvent) -> str:
    """One JSONL line (with the trailing newline)."""
    return json_dumps(event_dict(event)) + "\n"


def markdown_header(incident: Incident | None, incident_id: str, types: Iterable[str] | None = None) -> str:
    """The heading block of a Markdown export."""
    lines = [f"# Timeline of {incident_id}", ""]
    if incident is not None:
        lines.append(
            f"{incident.severity.upper()} · {incident.service} · declared "
            f"{incident.declared_at.strftime('%Y-%m-%d %H:%M:%S')} UTC · status {incident.status}"
        )
        lines.append("")
    if types:
        lines += [f"Only: {', '.join(sorted(types))}", ""]
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("`", "\\`")


async def markdown_lines(pages: AsyncIterator[list[TimelineEvent]]) -> AsyncIterator[str]:
    """Markdown lines (with newlines) for pages of events: a ``## YYYY-MM-DD`` heading whenever the UTC day changes."""
    day = None
    async for page in pages:
        for event in page:
            if event.occurred_at.date() != day:
                day = event.occurred_at.date()
                yield f"\n## {day.isoformat()}\n\n"
            actor = f" {_md_escape(event.actor)}" if event.actor else ""
            yield (
                f"- {event.occurred_at.strftime('%H:%M:%S')} **{event.type}**{actor} — {_md_escape(event.summary)}\n"
            )


def parse_jsonl_line(line: str) -> dict[str, Any]:
    """Read back a line written by :func:`jsonl_line` (used by tests and archive readers)."""
    obj: dict[str, Any] = json.loads(line)
    return obj


async def run_export(settings: Settings, incident_id: str, fmt: str, types: Sequence[str] | None, out: TextIO) -> int:
    """``chatops timeline export``: write the incident's timeline to ``out``; 0 on success, 1 when not found.

    Connects to ``DATABASE_URL``, or starts the embedded Postgres under ``CHATOPS_DATA_DIR`` like the daemon does
    (sharing it with a running daemon is fine: the last process to let go stops it).
    """
    from chatops.db.embedded import EmbeddedPostgres
    from chatops.db.pool import create_pool
    from chatops.incidents.store import IncidentStore
    from chatops.timeline.store import TimelineStore

    embedded: EmbeddedPostgres | None = None
    if settings.database_url is not None:
        dsn = settings.database_url.value
    else:
        embedded = EmbeddedPostgres(settings.data_dir)
        dsn = await embedded.start()
    try:
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            incident = await IncidentStore(pool).get(incident_id)
            if incident is None:
                print(f"chatops: no incident {incident_id!r}", file=sys.stderr)
                return 1
            pages = TimelineStore(pool).iter_events(incident_id, types=types)
            if fmt == "md":
                out.write(markdown_header(incident, incident_id, types))
                async for line in markdown_lines(pages):
                    out.write(line)
            else:
                async for page in pages:
                    out.write("".join(jsonl_line(e) for e in page))
            out.flush()
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            await embedded.stop()
    return 0
