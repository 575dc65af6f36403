"""Settings read once from the environment into a frozen object.

The variable names are a contract (see the README's configuration table). Validation collects every problem and
raises one :class:`~chatops.errors.ConfigError` with a line per problem, so a broken deployment says everything
that is wrong at once. Secrets are kept in :class:`Secret`, whose ``repr`` never shows the value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from chatops.errors import ConfigError

__all__ = ["Secret", "Settings"]


@dataclass(frozen=True)
class Secret:
    """A secret string; printing it shows ``'***'``."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self.value)


def _addr(value: str, name: str, problems: list[str]) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(f"{name} must look like HOST:PORT (e.g. 127.0.0.1:8080), got {value!r}")
        return "127.0.0.1", 8080
    return host, int(port)


def _url(value: str, name: str, schemes: tuple[str, ...], problems: list[str]) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.scheme == "file"):
        problems.append(f"{name} must be a {' or '.join(s + '://' for s in schemes)} URL, got {value!r}")
    return value


PROMETHEUS_TIMEOUT_DEFAULT = 15.0
PROMETHEUS_TIMEOUT_MAX = 30.0
"""``PROMETHEUS_TIMEOUT`` above this cannot work: ``/promql`` and ``/dashboard`` stop after 45 s, and after the limit
the client waits up to 5 s more for Prometheus' answer and then still has to draw and upload the chart."""


def _prometheus_timeout(raw: str | None, problems: list[str]) -> float:
    if raw is None:
        return PROMETHEUS_TIMEOUT_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= PROMETHEUS_TIMEOUT_MAX:  # nan fails this too
        problems.append(
            f"PROMETHEUS_TIMEOUT must be a number of seconds above 0 and at most {PROMETHEUS_TIMEOUT_MAX:g} "
            f"(/promql and /dashboard stop after 45 s), got {raw!r}"
        )
        return PROMETHEUS_TIMEOUT_DEFAULT
    return value


#: Where a pod's service account credentials are mounted (in-cluster defaults for the deploy watch).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _kubernetes(
    get: Callable[[str], str | None],
    secret: Callable[[str], Secret | None],
    problems: list[str],
) -> tuple[str | None, Secret | None, Path | None, Path | None]:
    """``KUBERNETES_API_URL`` + ``KUBERNETES_TOKEN`` / ``KUBERNETES_TOKEN_FILE`` + ``KUBERNETES_CA_FILE``, or the
    in-cluster service account when running in a pod (``KUBERNETES_SERVICE_HOST`` and a mounted token)."""
    url = get("KUBERNETES_API_URL")
    token = secret("KUBERNETES_TOKEN")
    token_file = Path(raw).expanduser() if (raw := get("KUBERNETES_TOKEN_FILE")) else None
    ca_file = Path(raw).expanduser() if (raw := get("KUBERNETES_CA_FILE")) else None
    host, port = get("KUBERNETES_SERVICE_HOST"), get("KUBERNETES_SERVICE_PORT") or "443"
    if url is None and host is not None and (SERVICE_ACCOUNT_DIR / "token").is_file():
        url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        token_file = token_file or SERVICE_ACCOUNT_DIR / "token"
        ca_file = ca_file or SERVICE_ACCOUNT_DIR / "ca.crt"
    if url is None:
        for name in ("KUBERNETES_TOKEN", "KUBERNETES_TOKEN_FILE", "KUBERNETES_CA_FILE"):
            if get(name):
                problems.append(f"{name} is set but KUBERNETES_API_URL is not (the deploy watch needs both)")
        return None, None, None, None
    _url(url, "KUBERNETES_API_URL", ("https", "http"), problems)
    if token is not None and token_file is not None:
        problems.append("set KUBERNETES_TOKEN or KUBERNETES_TOKEN_FILE, not both")
    for name, path in (("KUBERNETES_TOKEN_FILE", token_file), ("KUBERNETES_CA_FILE", ca_file)):
        if path is not None and not path.is_file():
            problems.append(f"{name} {str(path)!r} is not a readable file")
    return url.rstrip("/"), token, token_file, ca_file


@dataclass(frozen=True)
class Settings:
    """Everything chatops reads from its environment."""

    slack_bot_token: Secret | None
    slack_app_token: Secret | None
    slack_api_url: str
    pagerduty_api_key: Secret | None
    pagerduty_from: str | None
    pagerduty_api_url: str
    pagerduty_webhook_secrets: tuple[Secret, ...]
    database_url: Secret | None
    data_dir: Path
    archive_url: str
    prometheus_url: str | None
    zoom_account_id: str | None
    zoom_client_id: str | None
    zoom_client_secret: Secret | None
    zoom_api_url: str
    zoom_oauth_url: str
    statuspage_api_url: str
    statuspage_api_key: Secret | None
    statuspage_page_id: str | None
    jira_url: str | None
    jira_email: str | None
    jira_api_token: Secret | None
    k8s_audit_token: Secret | None
    http_host: str
    http_port: int
    public_url: str
    policy_dir: Path
    commands_dir: Path
    runbooks_dir: Path
    prometheus_timeout: float = PROMETHEUS_TIMEOUT_DEFAULT
    """``PROMETHEUS_TIMEOUT``: seconds a Prometheus query may run (sent as its ``timeout``) before it is given up."""
    log_level: str = "INFO"
    shutdown_timeout: float = 25.0
    archive_interval: float = 3600.0
    kubernetes_api_url: str | None = None
    kubernetes_token: Secret | None = None
    kubernetes_token_file: Path | None = None
    kubernetes_ca_file: Path | None = None
    link_secret: Secret | None = None
    """``CHATOPS_LINK_SECRET``: key for signing ``/go/`` links (unset: a random key kept under the data dir)."""
    public_url_set: bool = True
    """Whether ``CHATOPS_PUBLIC_URL`` was given; if not, links use the address actually bound (port 0 in tests)."""

    @property
    def pagerduty_enabled(self) -> bool:
        """PagerDuty is on when an API key is configured."""
        return self.pagerduty_api_key is not None

    @property
    def kubernetes_enabled(self) -> bool:
        """The deploy watch is on when a Kubernetes API is configured (or found in-cluster)."""
        return self.kubernetes_api_url is not None

    @property
    def zoom_enabled(self) -> bool:
        """Zoom is on when all three Server-to-Server OAuth settings are present."""
        return bool(self.zoom_account_id and self.zoom_client_id and self.zoom_client_secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require_slack: bool = True) -> Settings:
        """Read and validate settings; raise ConfigError listing every problem."""
        env = dict(os.environ if env is None else env)
        problems: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def secret(name: str) -> Secret | None:
            value = get(name)
            return Secret(value) if value else None

        bot = secret("SLACK_BOT_TOKEN")
        app = secret("SLACK_APP_TOKEN")
        if require_slack:
            if bot is None:
                problems.append("SLACK_BOT_TOKEN is required (the xoxb-… bot token from OAuth & Permissions)")
            if app is None:
                problems.append("SLACK_APP_TOKEN is required (the xapp-… app-level token with connections:write)")
        if bot is not None and not bot.value.startswith("xoxb-"):
            problems.append("SLACK_BOT_TOKEN must start with xoxb-")
        if app is not None and not app.value.startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN must start with xapp-")

        slack_api_url = _url(
            get("SLACK_API_URL") or "https://slack.com/api/", "SLACK_API_URL", ("https", "http"), problems
        )
        if not slack_api_url.endswith("/"):
            slack_api_url += "/"

        pd_key = secret("PAGERDUTY_API_KEY")
        pd_from = get("PAGERDUTY_FROM")
        if pd_key is not None and (pd_from is None or "@" not in pd_from):
            problems.append("PAGERDUTY_FROM must be the email of a PagerDuty user when PAGERDUTY_API_KEY is set")
        pd_url = _url(
            get("PAGERDUTY_API_URL") or "https://api.pagerduty.com", "PAGERDUTY_API_URL", ("https",), problems
        ).rstrip("/")
        webhook_secrets = tuple(
            Secret(s.strip()) for s in (get("PAGERDUTY_WEBHOOK_SECRETS") or "").split(",") if s.strip()
        )

        database_url = secret("DATABASE_URL")
        if database_url is not None and urlparse(database_url.value).scheme not in ("postgres", "postgresql"):
            problems.append("DATABASE_URL must be a postgresql:// DSN")

        data_dir = Path(get("CHATOPS_DATA_DIR") or "./.chatops").resolve()
        archive_url = get("ARCHIVE_URL") or f"file://{data_dir / 'archive'}"
        _url(archive_url, "ARCHIVE_URL", ("s3", "file"), problems)

        prometheus_url = get("PROMETHEUS_URL")
        if prometheus_url is not None:
            _url(prometheus_url, "PROMETHEUS_URL", ("http", "https"), problems)
        prometheus_timeout = _prometheus_timeout(get("PROMETHEUS_TIMEOUT"), problems)

        zoom_account, zoom_client, zoom_secret = (
            get("ZOOM_ACCOUNT_ID"),
            get("ZOOM_CLIENT_ID"),
            secret("ZOOM_CLIENT_SECRET"),
        )
        zoom_given = [
            n
            for n, v in (
                ("ZOOM_ACCOUNT_ID", zoom_account),
                ("ZOOM_CLIENT_ID", zoom_client),
                ("ZOOM_CLIENT_SECRET", zoom_secret),
            )
            if v
        ]
        if zoom_given and len(zoom_given) != 3:
            missing = {"ZOOM_ACCOUNT_ID", "ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET"} - set(zoom_given)
            problems.append(f"Zoom is half-configured: also set {', '.join(sorted(missing))} (or unset all three)")
        zoom_api = _url(
            get("ZOOM_API_URL") or "https://api.zoom.us/v2", "ZOOM_API_URL", ("https", "http"), problems
        ).rstrip("/")
        zoom_oauth = _url(
            get("ZOOM_OAUTH_URL") or "https://zoom.us/oauth/token", "ZOOM_OAUTH_URL", ("https", "http"), problems
        )

        host, port = _addr(get("CHATOPS_HTTP_ADDR") or "127.0.0.1:8080", "CHATOPS_HTTP_ADDR", problems)
        public_url_set = get("CHATOPS_PUBLIC_URL") is not None
        public_url = (get("CHATOPS_PUBLIC_URL") or f"http://{host}:{port}").rstrip("/")
        _url(public_url, "CHATOPS_PUBLIC_URL", ("http", "https"), problems)

        log_level = (get("CHATOPS_LOG_LEVEL") or "INFO").upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            problems.append("CHATOPS_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR")

        shutdown_raw = get("CHATOPS_SHUTDOWN_TIMEOUT") or "25"
        try:
            shutdown_timeout = float(shutdown_raw)
            if not 0 <= shutdown_timeout < math.inf:  # negative, inf and nan would break the drain on SIGTERM
                raise ValueError(shutdown_raw)
        except ValueError:
            shutdown_timeout = 25.0
            problems.append(f"CHATOPS_SHUTDOWN_TIMEOUT must be a number of seconds, got {shutdown_raw!r}")

        archive_raw = get("CHATOPS_ARCHIVE_INTERVAL") or "3600"
        try:
            archive_interval = float(archive_raw)
            if archive_interval < 0:
                raise ValueError(archive_raw)
        except ValueError:
            archive_interval = 3600.0
            problems.append(f"CHATOPS_ARCHIVE_INTERVAL must be seconds (0 turns it off), got {archive_raw!r}")

        kube_url, kube_token, kube_token_file, kube_ca = _kubernetes(get, secret, problems)

        if problems:
            raise ConfigError(problems)
        return cls(
            slack_bot_token=bot,
            slack_app_token=app,
            slack_api_url=slack_api_url,
            pagerduty_api_key=pd_key,
            pagerduty_from=pd_from,
            pagerduty_api_url=pd_url,
            pagerduty_webhook_secrets=webhook_secrets,
            database_url=database_url,
            data_dir=data_dir,
            archive_url=archive_url,
            prometheus_url=prometheus_url,
            prometheus_timeout=prometheus_timeout,
            zoom_account_id=zoom_account,
            zoom_client_id=zoom_client,
            zoom_client_secret=zoom_secret,
            zoom_api_url=zoom_api,
            zoom_oauth_url=zoom_oauth,
            statuspage_api_url=(get("STATUSPAGE_API_URL") or "https://api.statuspage.io/v1/"),
            statuspage_api_key=secret("STATUSPAGE_API_KEY"),
            statuspage_page_id=get("STATUSPAGE_PAGE_ID"),
            jira_url=get("JIRA_URL"),
            jira_email=get("JIRA_EMAIL"),
            jira_api_token=secret("JIRA_API_TOKEN"),
            k8s_audit_token=secret("K8S_AUDIT_TOKEN"),
            http_host=host,
            http_port=port,
            public_url=public_url,
            policy_dir=Path(get("CHATOPS_POLICY_DIR") or "./policy").resolve(),
            commands_dir=Path(get("CHATOPS_COMMANDS_DIR") or "./commands").resolve(),
            runbooks_dir=Path(get("CHATOPS_RUNBOOKS_DIR") or "./runbooks").resolve(),
            log_level=log_level,
            shutdown_timeout=shutdown_timeout,
            archive_interval=archive_interval,
            link_secret=secret("CHATOPS_LINK_SECRET"),
            public_url_set=public_url_set,
            kubernetes_api_url=kube_url,
            kubernetes_token=kube_token,
            kubernetes_token_file=kube_token_file,
            kubernetes_ca_file=kube_ca,
        )
