"""``chatops.settings``: the environment contract (README configuration table), validation and secret hygiene."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatops.errors import ConfigError
from chatops.settings import Secret, Settings

BOT = "xoxb-1234-5678-abcdefSECRETbot"
APP = "xapp-1-A0-1234-abcdefSECRETapp"
MINIMAL = {"SLACK_BOT_TOKEN": BOT, "SLACK_APP_TOKEN": APP}


def problems(env: dict[str, str], **kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env, **kwargs)
    return exc.value.problems


def only_problem(**env: str) -> str:
    [problem] = problems(MINIMAL | env)
    return problem


# ------------------------------------------------------------------------------------------------ defaults


def test_defaults_follow_the_readme_configuration_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env(MINIMAL)
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.pagerduty_api_key is None and s.pagerduty_from is None and not s.pagerduty_enabled
    assert s.pagerduty_api_url == "https://api.pagerduty.com"
    assert s.pagerduty_webhook_secrets == ()
    assert s.database_url is None  # → embedded Postgres under the data dir
    assert s.data_dir == tmp_path / ".chatops"
    assert s.archive_url == f"file://{tmp_path / '.chatops' / 'archive'}"
    assert s.prometheus_url is None and s.prometheus_timeout == 15.0
    assert not s.zoom_enabled
    assert s.zoom_api_url == "https://api.zoom.us/v2"
    assert s.zoom_oauth_url == "https://zoom.us/oauth/token"
    assert s.statuspage_api_key is None and s.jira_url is None and s.k8s_audit_token is None
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8080)
    assert s.public_url == "http://127.0.0.1:8080"  # http://<CHATOPS_HTTP_ADDR>
    assert s.policy_dir == tmp_path / "policy"
    assert s.commands_dir == tmp_path / "commands"
    assert s.runbooks_dir == tmp_path / "runbooks"
    assert s.shutdown_timeout == 25.0
    assert s.log_level == "INFO"


def test_public_url_follows_the_http_address() -> None:
    s = Settings.from_env(MINIMAL | {"CHATOPS_HTTP_ADDR": "0.0.0.0:9000"})
    assert (s.http_host, s.http_port, s.public_url) == ("0.0.0.0", 9000, "http://0.0.0.0:9000")


def test_every_variable_is_read(tmp_path: Path) -> None:
    env = MINIMAL | {
        "SLACK_API_URL": "https://slack-gov.com/api",
        "PAGERDUTY_API_KEY": "pd-key-SECRET",
        "PAGERDUTY_FROM": "bot@example.com",
        "PAGERDUTY_API_URL": "https://api.eu.pagerduty.com/",
        "PAGERDUTY_WEBHOOK_SECRETS": "whsec-one-SECRET, whsec-two-SECRET ,",
        "DATABASE_URL": "postgresql://chatops:pw-SECRET@db:5432/chatops",
        "CHATOPS_DATA_DIR": str(tmp_path / "state"),
        "ARCHIVE_URL": "s3://bucket/incidents",
        "PROMETHEUS_URL": "http://prometheus:9090",
        "PROMETHEUS_TIMEOUT": "25",
        "ZOOM_ACCOUNT_ID": "acct",
        "ZOOM_CLIENT_ID": "client",
        "ZOOM_CLIENT_SECRET": "zoom-SECRET",
        "ZOOM_API_URL": "https://zoom.example/v2/",
        "ZOOM_OAUTH_URL": "https://zoom.example/oauth/token",
        "CHATOPS_HTTP_ADDR": "10.0.0.5:8081",
        "CHATOPS_PUBLIC_URL": "https://chatops.example.com/",
        "CHATOPS_POLICY_DIR": str(tmp_path / "p"),
        "CHATOPS_COMMANDS_DIR": str(tmp_path / "c"),
        "CHATOPS_RUNBOOKS_DIR": str(tmp_path / "r"),
        "CHATOPS_SHUTDOWN_TIMEOUT": "7.5",
        "CHATOPS_LOG_LEVEL": "debug",
    }
    s = Settings.from_env(env)
    assert s.slack_api_url == "https://slack-gov.com/api/"  # a trailing slash is added for the SDK
    assert s.pagerduty_enabled and s.pagerduty_from == "bot@example.com"
    assert s.pagerduty_api_url == "https://api.eu.pagerduty.com"
    assert [w.value for w in s.pagerduty_webhook_secrets] == ["whsec-one-SECRET", "whsec-two-SECRET"]
    assert s.database_url is not None and s.database_url.value.endswith("@db:5432/chatops")
    assert s.data_dir == tmp_path / "state" and s.archive_url == "s3://bucket/incidents"
    assert s.prometheus_url == "http://prometheus:9090" and s.prometheus_timeout == 25.0
    assert s.zoom_enabled and s.zoom_api_url == "https://zoom.example/v2"
    assert (s.http_host, s.http_port, s.public_url) == ("10.0.0.5", 8081, "https://chatops.example.com")
    assert (s.policy_dir, s.commands_dir, s.runbooks_dir) == (tmp_path / "p", tmp_path / "c", tmp_path / "r")
    assert s.shutdown_timeout == 7.5 and s.log_level == "DEBUG"


def test_blank_values_count_as_unset() -> None:
    s = Settings.from_env(MINIMAL | {"DATABASE_URL": "  ", "PAGERDUTY_API_KEY": "", "ZOOM_CLIENT_ID": " "})
    assert s.database_url is None and not s.pagerduty_enabled and not s.zoom_enabled


def test_slack_tokens_may_be_left_out_when_not_running() -> None:
    s = Settings.from_env({}, require_slack=False)
    assert s.slack_bot_token is None and s.slack_app_token is None


# ---------------------------------------------------------------------------------------------- validation


def test_missing_slack_tokens_say_where_to_get_them() -> None:
    assert problems({}) == [
        "SLACK_BOT_TOKEN is required (the xoxb-… bot token from OAuth & Permissions)",
        "SLACK_APP_TOKEN is required (the xapp-… app-level token with connections:write)",
    ]


def test_swapped_slack_tokens() -> None:
    assert problems({"SLACK_BOT_TOKEN": APP, "SLACK_APP_TOKEN": BOT}) == [
        "SLACK_BOT_TOKEN must start with xoxb-",
        "SLACK_APP_TOKEN must start with xapp-",
    ]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SLACK_API_URL", "slack.com/api", "SLACK_API_URL must be a https:// or http:// URL, got 'slack.com/api'"),
        ("PAGERDUTY_API_URL", "http://pd.example", "PAGERDUTY_API_URL must be a https:// URL, got 'http://pd.example'"),
        ("DATABASE_URL", "mysql://db/chatops", "DATABASE_URL must be a postgresql:// DSN"),
        ("ARCHIVE_URL", "https://bucket", "ARCHIVE_URL must be a s3:// or file:// URL, got 'https://bucket'"),
        ("ARCHIVE_URL", "s3://", "ARCHIVE_URL must be a s3:// or file:// URL, got 's3://'"),
        ("PROMETHEUS_URL", "prom:9090", "PROMETHEUS_URL must be a http:// or https:// URL, got 'prom:9090'"),
        ("ZOOM_API_URL", "ftp://zoom", "ZOOM_API_URL must be a https:// or http:// URL, got 'ftp://zoom'"),
        ("ZOOM_OAUTH_URL", "zoom.us/oauth", "ZOOM_OAUTH_URL must be a https:// or http:// URL, got 'zoom.us/oauth'"),
        (
            "CHATOPS_HTTP_ADDR",
            "8080",
            "CHATOPS_HTTP_ADDR must look like HOST:PORT (e.g. 127.0.0.1:8080), got '8080'",
        ),
        (
            "CHATOPS_HTTP_ADDR",
            "localhost:99999",
            "CHATOPS_HTTP_ADDR must look like HOST:PORT (e.g. 127.0.0.1:8080), got 'localhost:99999'",
        ),
        (
            "CHATOPS_HTTP_ADDR",
            ":8080",
            "CHATOPS_HTTP_ADDR must look like HOST:PORT (e.g. 127.0.0.1:8080), got ':8080'",
        ),
        (
            "CHATOPS_PUBLIC_URL",
            "chatops.example.com",
            "CHATOPS_PUBLIC_URL must be a http:// or https:// URL, got 'chatops.example.com'",
        ),
        ("CHATOPS_LOG_LEVEL", "verbose", "CHATOPS_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"),
        ("CHATOPS_SHUTDOWN_TIMEOUT", "soon", "CHATOPS_SHUTDOWN_TIMEOUT must be a number of seconds, got 'soon'"),
        ("CHATOPS_SHUTDOWN_TIMEOUT", "-5", "CHATOPS_SHUTDOWN_TIMEOUT must be a number of seconds, got '-5'"),
        ("CHATOPS_SHUTDOWN_TIMEOUT", "nan", "CHATOPS_SHUTDOWN_TIMEOUT must be a number of seconds, got 'nan'"),
        ("CHATOPS_SHUTDOWN_TIMEOUT", "inf", "CHATOPS_SHUTDOWN_TIMEOUT must be a number of seconds, got 'inf'"),
    ],
)
def test_each_malformed_value_gets_one_clear_line(name: str, value: str, message: str) -> None:
    assert only_problem(**{name: value}) == message


def test_pagerduty_key_needs_a_from_email() -> None:
    message = "PAGERDUTY_FROM must be the email of a PagerDuty user when PAGERDUTY_API_KEY is set"
    assert only_problem(PAGERDUTY_API_KEY="k") == message
    assert only_problem(PAGERDUTY_API_KEY="k", PAGERDUTY_FROM="not-an-email") == message


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"ZOOM_ACCOUNT_ID": "a"}, "ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET"),
        ({"ZOOM_ACCOUNT_ID": "a", "ZOOM_CLIENT_SECRET": "s"}, "ZOOM_CLIENT_ID"),
        ({"ZOOM_CLIENT_ID": "c", "ZOOM_CLIENT_SECRET": "s"}, "ZOOM_ACCOUNT_ID"),
    ],
)
def test_half_configured_zoom_names_what_is_missing(given: dict[str, str], missing: str) -> None:
    assert only_problem(**given) == f"Zoom is half-configured: also set {missing} (or unset all three)"


@pytest.mark.parametrize(("raw", "seconds"), [("15", 15.0), (" 7.5 ", 7.5), ("0.25", 0.25), ("30", 30.0), ("", 15.0)])
def test_prometheus_timeout_is_seconds(raw: str, seconds: float) -> None:
    assert Settings.from_env(MINIMAL | {"PROMETHEUS_TIMEOUT": raw}).prometheus_timeout == seconds


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "15s", "nan", "inf", "30.5", "120"])
def test_a_bad_prometheus_timeout_gets_one_clear_line(raw: str) -> None:
    assert only_problem(PROMETHEUS_TIMEOUT=raw) == (
        "PROMETHEUS_TIMEOUT must be a number of seconds above 0 and at most 30 (/promql and /dashboard stop after "
        f"45 s), got {raw!r}"
    )


def test_prometheus_timeout_problems_come_with_the_others() -> None:
    found = problems({"PROMETHEUS_URL": "prom:9090", "PROMETHEUS_TIMEOUT": "0", "CHATOPS_LOG_LEVEL": "loud"})
    assert [p.split(" ", 1)[0] for p in found] == [
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "PROMETHEUS_URL",
        "PROMETHEUS_TIMEOUT",
        "CHATOPS_LOG_LEVEL",
    ]


def test_zero_shutdown_timeout_is_allowed() -> None:
    assert Settings.from_env(MINIMAL | {"CHATOPS_SHUTDOWN_TIMEOUT": "0"}).shutdown_timeout == 0.0


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {
            "SLACK_BOT_TOKEN": "nope",
            "PAGERDUTY_API_KEY": "k",
            "DATABASE_URL": "sqlite:///x",
            "CHATOPS_LOG_LEVEL": "loud",
            "CHATOPS_HTTP_ADDR": "nowhere",
        }
    )
    assert len(found) == 6
    assert found[0].startswith("SLACK_APP_TOKEN is required")
    assert found[1] == "SLACK_BOT_TOKEN must start with xoxb-"
    assert any(p.startswith("PAGERDUTY_FROM") for p in found)
    assert any(p.startswith("DATABASE_URL") for p in found)
    assert any(p.startswith("CHATOPS_LOG_LEVEL") for p in found)
    assert any(p.startswith("CHATOPS_HTTP_ADDR") for p in found)
    assert str(ConfigError(found)) == "\n".join(found)  # one line per problem


# --------------------------------------------------------------------------------------------------- secrets


def test_secrets_are_never_in_repr_or_str() -> None:
    secrets = {
        "SLACK_BOT_TOKEN": BOT,
        "SLACK_APP_TOKEN": APP,
        "PAGERDUTY_API_KEY": "pdkey-SECRET-1",
        "PAGERDUTY_FROM": "bot@example.com",
        "PAGERDUTY_WEBHOOK_SECRETS": "whsec-SECRET-2,whsec-SECRET-3",
        "DATABASE_URL": "postgresql://u:dbpass-SECRET-4@db/chatops",
        "ZOOM_ACCOUNT_ID": "acct",
        "ZOOM_CLIENT_ID": "client",
        "ZOOM_CLIENT_SECRET": "zoom-SECRET-5",
        "STATUSPAGE_API_KEY": "sp-SECRET-6",
        "JIRA_API_TOKEN": "jira-SECRET-7",
        "K8S_AUDIT_TOKEN": "audit-SECRET-8",
    }
    s = Settings.from_env(secrets)
    for text in (repr(s), str(s), f"{s}", repr(s.slack_bot_token), str(s.database_url)):
        assert "SECRET" not in text, text
    assert "Secret('***')" in repr(s)
    assert s.slack_bot_token is not None and s.slack_bot_token.value == BOT  # still usable


def test_a_secret_prints_as_stars_and_is_falsy_when_empty() -> None:
    assert repr(Secret("hunter2")) == "Secret('***')"
    assert str(Secret("hunter2")) == "***"
    assert f"{Secret('hunter2')}" == "***"
    assert Secret("hunter2") and not Secret("")


def test_malformed_values_are_not_echoed_for_secret_variables() -> None:
    found = problems(
        {"SLACK_BOT_TOKEN": "xoxp-user-SECRET", "SLACK_APP_TOKEN": "bad-SECRET", "DATABASE_URL": "mysql://u:SECRET@db"}
    )
    assert len(found) == 3
    assert found and all("SECRET" not in p for p in found)
