"""A whole sandbox workspace: Slack, PagerDuty, Zoom (and optionally Kubernetes) stand-ins, seeded from a policy folder.

Used by ``chatops demo``, the end-to-end tests and the benchmarks. :meth:`SandboxWorld.env` gives the environment
a daemon needs to talk to it — exactly the production variables, only the base URLs point at 127.0.0.1.

The cast (PaisaBridge's Saturday night from the seed): Aditi is the IC on rotation and has a triggered page
(``CheckoutAPIErrorRateBurnRate14_4_1h``) on checkout's primary service; Ravi, Karan and Meera are on call for the
other roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from chatops.policy.loader import load_policy
from chatops.sandbox.kubernetes import KubernetesSandbox
from chatops.sandbox.pagerduty import PagerDutySandbox
from chatops.sandbox.slack import SlackSandbox
from chatops.sandbox.tls import SandboxTLS
from chatops.sandbox.zoom import ZoomSandbox

__all__ = ["Person", "SandboxWorld"]


@dataclass(frozen=True)
class Person:
    """Someone who exists in both the sandbox Slack and PagerDuty."""

    slack_id: str
    name: str
    real_name: str
    email: str
    pd_id: str


IC = Person("U0ADITI01", "aditi.r", "Aditi Rao", "aditi@paisabridge.example", "PADITI1")
CAST = (
    IC,
    Person("U0RAVI001", "ravi", "Ravi Menon", "ravi@paisabridge.example", "PRAVI01"),
    Person("U0KARAN01", "karan", "Karan Shah", "karan@paisabridge.example", "PKARAN1"),
    Person("U0MEERA01", "meera", "Meera Iyer", "meera@paisabridge.example", "PMEERA1"),
)
PD_FROM = "incident-bot@paisabridge.example"


class SandboxWorld:
    """Start with ``async with SandboxWorld(policy_dir) as world``."""

    def __init__(
        self,
        policy_dir: Path,
        *,
        zoom: bool = True,
        pagerduty: bool = True,
        slack_tier_limits: dict[int, int] | None = None,
        ack_timeout: float = 3.0,
        emit_message_events: bool = False,
        kubernetes: bool = False,
    ) -> None:
        self.policy = load_policy(policy_dir)
        self.policy_dir = policy_dir
        self.tls = SandboxTLS()
        self.slack = SlackSandbox(
            ack_timeout=ack_timeout, tier_limits=slack_tier_limits, emit_message_events=emit_message_events
        )
        self.pagerduty: PagerDutySandbox | None = PagerDutySandbox(self.tls) if pagerduty else None
        self.zoom: ZoomSandbox | None = ZoomSandbox() if zoom else None
        #: The Kubernetes API stand-in (Deployments), when asked for.
        self.kubernetes: KubernetesSandbox | None = KubernetesSandbox() if kubernetes else None
        self.ic = IC
        self.people = CAST
        self.ops_channel = ""
        self.draft_channel = ""
        self.platform_channel = ""
        self.alert: dict[str, object] | None = None

    async def __aenter__(self) -> SandboxWorld:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start every stand-in and seed people, channels, services and the IC's page."""
        await self.slack.start()
        for person in self.people:
            self.slack.add_user(person.slack_id, person.name, email=person.email, real_name=person.real_name)
        self.ops_channel = self.slack.add_channel("ops", members=[p.slack_id for p in self.people])
        self.draft_channel = self.slack.add_channel(self.policy.draft_channel)
        self.platform_channel = self.slack.add_channel(self.policy.platform_channel)
        if self.pagerduty is not None:
            await self.pagerduty.start()
            self._seed_pagerduty(self.pagerduty)
        if self.zoom is not None:
            await self.zoom.start()
        if self.kubernetes is not None:
            await self.kubernetes.start()

    def _seed_pagerduty(self, pd: PagerDutySandbox) -> None:
        pd.add_user("PBOT001", PD_FROM, "chatops bot")
        for person in self.people:
            pd.add_user(person.pd_id, person.email, person.real_name)
        on_call = {
            "primary": IC,
            "secondary": self.people[1],
            "manager": self.people[2],
            "vp_eng": self.people[2],
            "cs_lead": self.people[3],
        }
        for service in self.policy.services.values():
            for role, pd_service in service.pagerduty.items():
                pd.add_service(pd_service, f"{service.name} {role}")
                pd.set_on_call(pd_service, on_call.get(role, self.people[1]).pd_id)
        checkout = self.policy.services.get("checkout")
        if checkout is not None:
            self.alert = pd.add_incident(
                service_id=checkout.pagerduty["primary"],
                title="CheckoutAPIErrorRateBurnRate14_4_1h",
                assigned_to=IC.pd_id,
            )

    async def stop(self) -> None:
        """Stop everything and remove the throwaway CA."""
        if self.kubernetes is not None:
            await self.kubernetes.stop()
        if self.zoom is not None:
            await self.zoom.stop()
        if self.pagerduty is not None:
            await self.pagerduty.stop()
        await self.slack.stop()
        self.tls.cleanup()

    def env(self, **overrides: str) -> dict[str, str]:
        """The daemon's environment for this world (production variable names, local base URLs)."""
        env = {
            "SLACK_BOT_TOKEN": self.slack.bot_token,
            "SLACK_APP_TOKEN": self.slack.app_token,
            "SLACK_API_URL": self.slack.api_url,
            "CHATOPS_POLICY_DIR": str(self.policy_dir),
            "CHATOPS_HTTP_ADDR": "127.0.0.1:0",
        }
        if self.pagerduty is not None:
            env |= {
                "PAGERDUTY_API_KEY": "pd-sandbox-key",
                "PAGERDUTY_FROM": PD_FROM,
                "PAGERDUTY_API_URL": self.pagerduty.url,
                "SSL_CERT_FILE": str(self.tls.ca_bundle_path),
            }
        if self.zoom is not None:
            env |= {
                "ZOOM_ACCOUNT_ID": self.zoom.account_id,
                "ZOOM_CLIENT_ID": self.zoom.client_id,
                "ZOOM_CLIENT_SECRET": self.zoom.client_secret,
                "ZOOM_API_URL": self.zoom.api_url,
                "ZOOM_OAUTH_URL": self.zoom.oauth_url,
            }
        if self.kubernetes is not None:
            env |= {"KUBERNETES_API_URL": self.kubernetes.url, "KUBERNETES_TOKEN": self.kubernetes.token}
        return env | overrides
