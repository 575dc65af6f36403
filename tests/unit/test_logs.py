"""``chatops.logs``: one JSON object per line on stderr, extras as keys, tokens redacted wherever they appear."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from chatops.logs import JsonFormatter, configure_logging, redact
from chatops.settings import Secret

BOT = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
APP = "xapp-1-A0SANDBOX-123456789012-0123456789abcdef"
USER = "xoxp-1111-2222-3333-deadbeef"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging() rewires the root logger; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in ("slack_bolt", "slack_sdk", "aiohttp.access", "asyncio")}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in noisy.items():
            logging.getLogger(name).setLevel(old)


def record(message: str, *args: object, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("chatops.test", level, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def formatted(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line, "one object per line"
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_a_record_is_one_json_object_with_the_standard_fields() -> None:
    entry = formatted(record("declared %s on %s", "SEV2", "checkout", level=logging.WARNING))
    assert entry["message"] == "declared SEV2 on checkout"
    assert entry["level"] == "warning"
    assert entry["logger"] == "chatops.test"
    assert entry["time"].endswith("+00:00") and "T" in entry["time"]
    assert set(entry) == {"time", "level", "logger", "message"}


def test_extras_become_top_level_keys_and_odd_values_are_stringified() -> None:
    entry = formatted(record("incident declared", incident="inc-1", failures=0, tags=["a", "b"], obj=object()))
    assert entry["incident"] == "inc-1" and entry["failures"] == 0 and entry["tags"] == ["a", "b"]
    assert entry["obj"].startswith("<object object at")


def test_exceptions_are_in_the_error_field_on_the_same_line() -> None:
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        rec = logging.LogRecord("chatops.test", logging.ERROR, __file__, 1, "step failed", (), sys.exc_info())
    entry = formatted(rec)
    assert "Traceback (most recent call last)" in entry["error"]
    assert "RuntimeError: kaput" in entry["error"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"token {BOT} refused", "token *** refused"),
        (f"app token {APP}", "app token ***"),
        (f"user token {USER}.", "user token ***."),
        ("Authorization: Bearer eyJhbGciOi.J9.sig-_~+/=", "Authorization: Bearer ***"),
        ("authorization: bearer abc123", "authorization: bearer ***"),
        ("Authorization: Token token=y_abc123XYZ, From: bot@x", "Authorization: Token token=***, From: bot@x"),
        ("TOKEN TOKEN=abc'", "TOKEN TOKEN=***'"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ("no token here: xoxo hugs", "no token here: xoxo hugs"),
    ],
)
def test_redact_masks_tokens(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_tokens_are_redacted_in_message_extras_and_tracebacks() -> None:
    try:
        raise ValueError(f"invalid_auth for {BOT}")
    except ValueError:
        info = sys.exc_info()
    rec = logging.LogRecord("chatops.test", logging.ERROR, __file__, 1, "connect with %s", (APP,), info)
    rec.headers = {"Authorization": "Bearer sekret-bearer-value", "X-PD": "Token token=pd-sekret-key"}
    rec.url = f"https://slack.example/api/auth.test?token={BOT}"
    line = JsonFormatter().format(rec)
    for secret in (BOT, APP, "sekret-bearer-value", "pd-sekret-key"):
        assert secret not in line
    entry = json.loads(line)  # still valid JSON after masking
    assert entry["message"] == "connect with ***"
    assert entry["headers"] == {"Authorization": "Bearer ***", "X-PD": "Token token=***"}
    assert entry["url"] == "https://slack.example/api/auth.test?token=***"
    assert "ValueError: invalid_auth for ***" in entry["error"]


def test_secret_objects_in_extras_print_as_stars() -> None:
    entry = formatted(record("settings", token=Secret(BOT)))
    assert entry["token"] == "***"


def test_a_token_followed_by_an_escaped_quote_keeps_the_line_valid_json() -> None:
    line = JsonFormatter().format(record('PagerDuty header "Token token=pd-sekret-key" refused'))
    assert "pd-sekret-key" not in line
    assert json.loads(line)["message"] == 'PagerDuty header "Token token=***" refused'


def test_configure_logging_writes_json_lines_to_stderr(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    log = logging.getLogger("chatops.test.configured")
    log.info("incident declared", extra={"incident": "inc-1", "token": BOT})
    log.debug("not at INFO")
    logging.getLogger("slack_sdk").info("library chatter is quiet at INFO")
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "incident declared" and entry["incident"] == "inc-1" and entry["token"] == "***"


def test_configure_logging_at_debug_shows_debug(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG")
    logging.getLogger("chatops.test.configured").debug("details")
    assert json.loads(capsys.readouterr().err)["level"] == "debug"
