"""Confirmations: "run ``/restart-consumer checkout``?" asked before a side-effect command started from a button.

A question belongs to one user in one channel and expires (``confirm.expire_after`` in ``policy/grants.yaml``).
It lives in Postgres (``confirmations``, migration 0002), so the answer may arrive after a restart or at another
replica, and answering is atomic: a double click, or two replicas handling the same click, run the command once.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

__all__ = ["Answer", "ConfirmationStore", "Question", "confirmation_blocks"]

CONFIRM_ACTION = "chatops.confirm"
CANCEL_ACTION = "chatops.cancel"
_KEEP_ANSWERED = timedelta(days=7)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Question:
    """A pending confirmation: answer it with :meth:`ConfirmationStore.answer` and its ``token``."""

    token: str
    user_id: str
    channel_id: str
    command: str
    args_text: str
    expires_at: datetime

    @property
    def command_line(self) -> str:
        """``/restart-consumer checkout``."""
        return f"{self.command} {self.args_text}".strip()


@dataclass(frozen=True)
class Answer:
    """What answering did.

    ``outcome``: ``confirmed`` / ``cancelled`` (this answer counted; ``question`` is set), ``expired`` (too
    late), ``not_yours`` (another user or channel), ``answered`` (already confirmed or cancelled), ``unknown``.
    """

    outcome: Literal["confirmed", "cancelled", "expired", "not_yours", "answered", "unknown"]
    question: Question | None = None


def _question(row: asyncpg.Record) -> Question:
    return Question(
        token=row["token"],
        user_id=row["user_id"],
        channel_id=row["channel_id"],
        command=row["command"],
        args_text=row["args_text"],
        expires_at=row["expires_at"],
    )


_COLUMNS = "token, user_id, channel_id, command, args_text, expires_at"


class ConfirmationStore:
    """Confirmations in Postgres (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def ask(
        self, *, user_id: str, channel_id: str, command: str, args_text: str, now: datetime, ttl: timedelta
    ) -> Question:
        """Record a new question, valid until ``now + ttl``; old answered or expired ones are swept."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        token = secrets.token_urlsafe(18)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM confirmations WHERE expires_at < $1", now - _KEEP_ANSWERED)
            row = await conn.fetchrow(
                f"INSERT INTO confirmations (token, user_id, channel_id, command, args_text, created_at, expires_at) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
                token,
                user_id,
                channel_id,
                command,
                args_text,
                now,
                now + ttl,
            )
        return _question(row)

    async def answer(self, token: str, *, user_id: str, channel_id: str, confirm: bool, now: datetime) -> Answer:
        """Confirm or cancel question ``token`` as ``user_id`` in ``channel_id``; exactly one answer counts."""
        if not _TOKEN.fullmatch(token):
            return Answer("unknown")
        decision = "confirmed" if confirm else "cancelled"
        row = await self._pool.fetchrow(
            f"UPDATE confirmations SET decided_at = $4, decision = $5 "
            f"WHERE token = $1 AND user_id = $2 AND channel_id = $3 AND decided_at IS NULL AND expires_at > $4 "
            f"RETURNING {_COLUMNS}",
            token,
            user_id,
            channel_id,
            now,
            decision,
        )
        if row is not None:
            return Answer(decision, _question(row))  # type: ignore[arg-type]
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS}, decided_at FROM confirmations WHERE token = $1", token)
        if row is None:
            return Answer("unknown")
        question = _question(row)
        if row["user_id"] != user_id or row["channel_id"] != channel_id:
            return Answer("not_yours", question)
        if row["decided_at"] is not None:
            return Answer("answered", question)
        return Answer("expired", question)


def confirmation_blocks(question: Question, summary: str, ttl: timedelta) -> list[dict[str, Any]]:
    """The ephemeral "are you sure?" message with Run it / Cancel buttons carrying the question's token."""
    minutes = max(1, round(ttl.total_seconds() / 60))
    text = (
        f":warning: Run `{question.command_line}`?\n{summary}\n"
        f"_This changes things. The question is yours only and expires in {minutes} min._"
    )
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": CONFIRM_ACTION,
                    "text": {"type": "plain_text", "text": "Run it"},
                    "style": "danger",
                    "value": question.token,
                },
                {
                    "type": "button",
                    "action_id": CANCEL_ACTION,
                    "text": {"type": "plain_text", "text": "Cancel"},
                    "value": question.token,
                },
            ],
        },
    ]
