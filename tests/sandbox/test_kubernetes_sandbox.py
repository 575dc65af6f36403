"""Conformance of the Kubernetes stand-in, through kubernetes-asyncio (as the daemon uses it) and raw HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from chatops.sandbox.kubernetes import KubernetesSandbox

kubernetes_asyncio = pytest.importorskip("kubernetes_asyncio")
from kubernetes_asyncio import client, watch  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402

NS = "checkout"


@pytest.fixture
async def kube() -> AsyncIterator[KubernetesSandbox]:
    async with KubernetesSandbox() as sandbox:
        sandbox.create_deployment(NS, "api", image="checkout:1")
        yield sandbox


@pytest.fixture
async def apps(kube: KubernetesSandbox) -> AsyncIterator[Any]:
    config = client.Configuration(host=kube.url, api_key={"BearerToken": kube.token})
    config.api_key_prefix = {"BearerToken": "Bearer"}
    async with client.ApiClient(config) as api:
        yield client.AppsV1Api(api)


async def raw(kube: KubernetesSandbox, path: str, *, token: str | None = "", **params: str) -> tuple[int, Any, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token or kube.token}"}
    async with aiohttp.ClientSession() as session, session.get(kube.url + path, params=params, headers=headers) as r:
        return r.status, r.headers, json.loads(await r.read())


async def collect(apps: Any, *, namespace: str = NS, **kwargs: Any) -> list[dict[str, Any]]:
    kwargs.setdefault("timeout_seconds", 5)
    events = []
    async with watch.Watch(return_type="object") as w:
        async for event in w.stream(apps.list_namespaced_deployment, namespace, **kwargs):
            events.append(event)
    return events


def later(kube: KubernetesSandbox, action: Any, delay: float = 0.1) -> asyncio.Task[None]:
    async def run() -> None:
        await kube.wait_for(lambda: kube.open_watches() > 0, 5)
        await asyncio.sleep(delay)
        action()

    return asyncio.create_task(run())


async def test_bearer_token_is_required(kube: KubernetesSandbox) -> None:
    status, _, body = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments", token=None)
    assert status == 401 and body["kind"] == "Status" and body["code"] == 401
    status, _, _ = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments", token="wrong")
    assert status == 401
    status, _, body = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments")
    assert status == 200 and body["kind"] == "DeploymentList"


async def test_list_carries_the_resource_version_and_paginates(kube: KubernetesSandbox, apps: Any) -> None:
    for n in range(4):
        kube.create_deployment(NS, f"worker-{n}", image="worker:1")
    kube.create_deployment("other", "x", image="x:1")
    listing = await apps.list_namespaced_deployment(NS)
    assert listing.metadata.resource_version == kube.resource_version
    assert sorted(d.metadata.name for d in listing.items) == ["api", "worker-0", "worker-1", "worker-2", "worker-3"]
    status, _, page = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments", limit="2")
    assert status == 200 and len(page["items"]) == 2 and "kind" not in page["items"][0]
    token = page["metadata"]["continue"]
    status, _, rest = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments", limit="10", **{"continue": token})
    assert len(rest["items"]) == 3 and "continue" not in rest["metadata"]
    kube.scale(NS, "api", 4)
    kube.compact()
    status, _, gone = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments", limit="2", **{"continue": token})
    assert status == 410 and gone["code"] == 410
    everywhere = await apps.list_deployment_for_all_namespaces()
    assert len(everywhere.items) == 6


async def test_get_one_and_not_found(kube: KubernetesSandbox, apps: Any) -> None:
    api = await apps.read_namespaced_deployment("api", NS)
    assert api.spec.template.spec.containers[0].image == "checkout:1"
    with pytest.raises(ApiException) as caught:
        await apps.read_namespaced_deployment("nope", NS)
    assert caught.value.status == 404


async def test_watch_streams_changes_after_the_version_in_order(kube: KubernetesSandbox, apps: Any) -> None:
    start = kube.resource_version
    kube.create_deployment("other", "x", image="x:1")  # another namespace: not on this watch

    def act() -> None:
        kube.rollout(NS, "api", "checkout:2")
        kube.end_watches()

    task = later(kube, act)
    events = await collect(apps, resource_version=start)
    await task
    versions = [int(e["raw_object"]["metadata"]["resourceVersion"]) for e in events]
    assert [e["type"] for e in events] == ["MODIFIED"] * 5
    assert versions == sorted(versions) and all(v > int(start) for v in versions)
    assert events[-1]["raw_object"]["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:2"
    assert all(e["raw_object"]["metadata"]["namespace"] == NS for e in events)
    [request] = kube.watch_requests(NS)
    assert request.query["watch"] == "True"  # what kubernetes-asyncio sends


async def test_watch_without_version_starts_with_synthetic_added(kube: KubernetesSandbox, apps: Any) -> None:
    task = later(kube, kube.end_watches)
    events = await collect(apps)
    await task
    assert [(e["type"], e["raw_object"]["metadata"]["name"]) for e in events] == [("ADDED", "api")]


async def test_a_compacted_version_gets_410_gone(kube: KubernetesSandbox, apps: Any) -> None:
    start = kube.resource_version
    kube.scale(NS, "api", 5)
    kube.compact()
    with pytest.raises(ApiException) as caught:
        await collect(apps, resource_version=start)
    assert caught.value.status == 410
    status, _, _ = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments", watch="1", resourceVersion=start)
    assert status == 200  # the apiserver answers 200 and sends an ERROR event
    assert (await collect(apps, resource_version=kube.resource_version, timeout_seconds=1)) == []


async def test_the_compaction_window_knob(kube: KubernetesSandbox, apps: Any) -> None:
    kube.compaction_window = 2
    start = kube.resource_version
    for replicas in (4, 5, 6):
        kube.scale(NS, "api", replicas)
    with pytest.raises(ApiException) as caught:
        await collect(apps, resource_version=start)
    assert caught.value.status == 410
    recent = str(int(kube.resource_version) - 2)
    task = later(kube, kube.end_watches)
    events = await collect(apps, resource_version=recent)
    await task
    assert len(events) == 2


async def test_expiry_and_error_events_on_an_open_watch(kube: KubernetesSandbox, apps: Any) -> None:
    task = later(kube, kube.expire_watches)
    with pytest.raises(ApiException) as caught:
        await collect(apps, resource_version=kube.resource_version)
    await task
    assert caught.value.status == 410
    task = later(kube, lambda: kube.watch_error(500, "etcd is sad"))
    with pytest.raises(ApiException) as caught:
        await collect(apps, resource_version=kube.resource_version)
    await task
    assert caught.value.status == 500 and "etcd is sad" in str(caught.value)


async def test_a_dropped_connection_is_not_a_clean_end(kube: KubernetesSandbox, apps: Any) -> None:
    task = later(kube, kube.drop_watches)
    with pytest.raises(aiohttp.ClientPayloadError):
        await collect(apps, resource_version=kube.resource_version)
    await task
    assert kube.open_watches() == 0


async def test_timeout_ends_cleanly_after_a_bookmark(kube: KubernetesSandbox, apps: Any) -> None:
    events = await collect(apps, resource_version=kube.resource_version, timeout_seconds=1, allow_watch_bookmarks=True)
    assert [e["type"] for e in events] == ["BOOKMARK"]
    assert events[0]["raw_object"]["metadata"]["resourceVersion"] == kube.resource_version


async def test_injected_5xx_with_retry_after(kube: KubernetesSandbox, apps: Any) -> None:
    kube.fail(503, times=2, retry_after=2)
    status, headers, body = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments")
    assert status == 503 and headers["Retry-After"] == "2" and body["code"] == 503
    with pytest.raises(ApiException) as caught:
        await apps.list_namespaced_deployment(NS)
    assert caught.value.status == 503
    assert (await apps.list_namespaced_deployment(NS)).items


async def test_split_lines_are_reassembled(kube: KubernetesSandbox, apps: Any) -> None:
    kube.split_lines = True

    def act() -> None:
        kube.rollout(NS, "api", "checkout:2")
        kube.end_watches()

    task = later(kube, act)
    events = await collect(apps, resource_version=kube.resource_version)
    await task
    assert len(events) == 5 and all(e["type"] == "MODIFIED" for e in events)


async def test_bad_resource_version_and_unknown_paths(kube: KubernetesSandbox) -> None:
    status, _, body = await raw(kube, f"/apis/apps/v1/namespaces/{NS}/deployments", resourceVersion="abc")
    assert status == 400 and body["reason"] == "BadRequest"
    status, _, body = await raw(kube, "/api/v1/pods")
    assert status == 404 and body["kind"] == "Status"
