"""Kubernetes settings for the deploy watch, and the token-file credential against the stand-in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatops.errors import ConfigError
from chatops.sandbox.kubernetes import KubernetesSandbox
from chatops.settings import Settings
from chatops.sources.k8s_deploys import KubernetesConfig, _import_kubernetes

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}


def test_off_unless_configured() -> None:
    settings = Settings.from_env(BASE)
    assert not settings.kubernetes_enabled and settings.kubernetes_api_url is None


def test_url_and_token(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    env = BASE | {
        "KUBERNETES_API_URL": "https://k8s.example:6443/",
        "KUBERNETES_TOKEN": "t0k",
        "KUBERNETES_CA_FILE": str(ca),
    }
    settings = Settings.from_env(env)
    assert settings.kubernetes_enabled and settings.kubernetes_api_url == "https://k8s.example:6443"
    assert settings.kubernetes_token is not None and settings.kubernetes_token.value == "t0k"
    assert "t0k" not in repr(settings)
    assert settings.kubernetes_ca_file == ca


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"KUBERNETES_TOKEN": "t"}, "KUBERNETES_API_URL is not"),
        ({"KUBERNETES_API_URL": "ftp://x"}, "KUBERNETES_API_URL must be"),
        ({"KUBERNETES_API_URL": "https://x", "KUBERNETES_TOKEN_FILE": "/nonexistent/token"}, "not a readable file"),
    ],
)
def test_bad_settings_are_refused(extra: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(BASE | extra)
    assert any(problem in p for p in caught.value.problems)


async def test_a_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    client, _ = _import_kubernetes()
    token_file = tmp_path / "token"
    async with KubernetesSandbox(token="first") as kube:
        kube.create_deployment("checkout", "api", image="checkout:1")
        token_file.write_text("first\n")
        config = KubernetesConfig(url=kube.url, token_file=token_file).client_configuration(client)
        async with client.ApiClient(config) as api:
            apps = client.AppsV1Api(api)
            assert len((await apps.list_namespaced_deployment("checkout")).items) == 1
            kube.token = "second"
            token_file.write_text("second\n")
            os.utime(token_file, (1, 1))  # a different mtime, whatever the clock's resolution
            assert len((await apps.list_namespaced_deployment("checkout")).items) == 1
