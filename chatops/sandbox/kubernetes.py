"""A Kubernetes API stand-in for apps/v1 Deployments: list + chunked watch over real HTTP on 127.0.0.1.

:class:`KubernetesSandbox` serves what a Deployment watcher uses, so that kubernetes-asyncio's ``AppsV1Api`` and
``watch.Watch().stream(...)`` talk to it exactly as to an apiserver (only ``Configuration.host`` changes):

* ``GET /apis/apps/v1/namespaces/{ns}/deployments`` and ``GET /apis/apps/v1/deployments`` (all namespaces): a
  ``DeploymentList`` whose ``metadata.resourceVersion`` is the store's current version; ``limit`` + ``continue``
  paginate (a ``continue`` token older than the compaction horizon answers HTTP 410 ``Expired``).
* The same paths with ``watch=true`` (``True``/``1`` too; kubernetes-asyncio sends ``True``): a chunked stream of
  JSON lines ``{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}``.
  ``resourceVersion`` unset or ``"0"`` starts with a synthetic ``ADDED`` per existing object; ``N`` streams every
  change after ``N``; ``N`` older than the compaction horizon gets one ``ERROR`` event with a ``Status`` of code
  410 (reason ``Expired``, "too old resource version"), as the apiserver does. ``timeoutSeconds`` ends the stream
  cleanly (after a ``BOOKMARK`` when ``allowWatchBookmarks`` is true).
* ``GET /apis/apps/v1/namespaces/{ns}/deployments/{name}``, ``GET /version``.
* ``Authorization: Bearer <token>`` on every request, else 401 with a ``Status`` body.

Resource versions are one global, increasing integer (like etcd's revision), rendered as a string; clients must
treat them as opaque. Every change is kept in a history that :meth:`KubernetesSandbox.compact` (or the
``compaction_window`` knob: keep only the last N changes) forgets, which is what makes old watches expire.

Fault injection: :meth:`~KubernetesSandbox.fail` (5xx with a ``Status`` body, optionally ``Retry-After``),
:meth:`~KubernetesSandbox.end_watches` (clean end, as a server-side timeout),
:meth:`~KubernetesSandbox.drop_watches` (connection aborted mid-stream),
:meth:`~KubernetesSandbox.expire_watches` (``ERROR`` 410 on open watches), :meth:`~KubernetesSandbox.watch_error`
(any ``ERROR`` event), ``split_lines`` (each event written in two chunks, to prove clients reassemble lines).
Rollouts are driven with the controller steps of :mod:`chatops.sandbox.kubernetes_objects`. The control API is
meant for tests on the same event loop; each mutation is synchronous, so a test can make several changes that no
client can observe half-done.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from chatops.sandbox import kubernetes_objects as objects
from chatops.sandbox.kubernetes_objects import Obj

__all__ = ["KubeRequest", "KubernetesSandbox"]

_TRUE = {"true", "True", "1"}
_DEFAULT_WATCH_TIMEOUT = 1800.0
_CLIENT_CHECK = 0.1  # seconds between checks that an idle watch's client is still connected
_REASONS = {401: "Unauthorized", 404: "NotFound", 410: "Expired", 400: "BadRequest", 500: "InternalError"}


@dataclass
class KubeRequest:
    """One request as the stand-in answered it. ``status`` is the HTTP status (200 for every watch stream)."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    watch: bool
    at: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Watch:
    namespace: str | None
    since: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    control: str | None = None  # "end" | "drop"
    error: Obj | None = None


def status_body(code: int, message: str, reason: str | None = None) -> Obj:
    """A ``meta/v1 Status`` failure body."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "ServiceUnavailable" if code == 503 else "InternalError"),
        "code": code,
    }


class KubernetesSandbox:
    """An apiserver for Deployments on 127.0.0.1; see the module docstring.

    Args:
        token: the bearer token clients must send (random by default).
        compaction_window: keep only the last N changes in the watch history (``None``: keep all until
            :meth:`compact`).
        split_lines: write every watch event in two chunks.
    """

    def __init__(
        self, *, token: str | None = None, compaction_window: int | None = None, split_lines: bool = False
    ) -> None:
        self.token = token or f"sandbox-{secrets.token_urlsafe(24)}"
        self.compaction_window = compaction_window
        self.split_lines = split_lines
        #: ``http://127.0.0.1:PORT`` once started: ``Configuration.host``.
        self.url = ""
        #: Every request, in arrival order.
        self.requests: list[KubeRequest] = []
        self._objects: dict[tuple[str, str], Obj] = {}
        self._history: list[tuple[int, str, str, Obj]] = []  # (rv, type, namespace, object), by rv
        self._rv = 1000
        self._compacted = 0
        self._watches: set[_Watch] = set()
        self._failures: deque[tuple[int, float | None]] = deque()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0: any free port)."""
        app = web.Application()
        app.router.add_get("/version", self._version)
        app.router.add_get("/apis/apps/v1/deployments", self._collection)
        app.router.add_get("/apis/apps/v1/namespaces/{namespace}/deployments", self._collection)
        app.router.add_get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}", self._get)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        """End every watch and stop listening."""
        self.end_watches()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ objects (each call is one change)

    @property
    def resource_version(self) -> str:
        """The store's current resource version."""
        return str(self._rv)

    def deployment(self, namespace: str, name: str) -> Obj:
        """A copy of the stored Deployment (``KeyError`` when absent)."""
        return objects.snapshot(self._objects[(namespace, name)])

    def create_deployment(
        self, namespace: str, name: str, *, image: str, replicas: int = 3, container: str = "app"
    ) -> Obj:
        """Create a fully rolled-out Deployment (an ``ADDED`` event)."""
        if (namespace, name) in self._objects:
            raise ValueError(f"deployment {namespace}/{name} already exists")
        obj = objects.new_deployment(namespace, name, image=image, replicas=replicas, container=container)
        self._objects[(namespace, name)] = obj
        return self._changed("ADDED", obj)

    def set_image(
        self, namespace: str, name: str, image: str, *, container: str | None = None, manager: str = "kubectl-set"
    ) -> Obj:
        """``kubectl set image``: a new generation, not yet observed by the controller."""
        return self._mutate(
            namespace, name, lambda o: objects.set_image(o, image, container=container, manager=manager)
        )

    def observe(self, namespace: str, name: str) -> Obj:
        """The controller observed the new generation (no new pod yet)."""
        return self._mutate(namespace, name, objects.observe)

    def progress(self, namespace: str, name: str, *, updated: int, available: int | None = None) -> Obj:
        """``updated`` new pods, ``available`` available pods."""
        return self._mutate(namespace, name, lambda o: objects.progress(o, updated=updated, available=available))

    def complete(self, namespace: str, name: str) -> Obj:
        """Every replica updated and available."""
        return self._mutate(namespace, name, objects.complete)

    def fail_rollout(self, namespace: str, name: str, *, message: str | None = None) -> Obj:
        """``ProgressDeadlineExceeded``."""
        return self._mutate(namespace, name, lambda o: objects.fail(o, message=message))

    def scale(self, namespace: str, name: str, replicas: int) -> Obj:
        """``kubectl scale`` (the controller catches up at once)."""
        return self._mutate(namespace, name, lambda o: objects.scale(o, replicas))

    def rollout(self, namespace: str, name: str, image: str, *, manager: str = "kubectl-set") -> Obj:
        """A whole successful rollout of ``image``: set image, observe, one pod at a time, complete."""
        self.set_image(namespace, name, image, manager=manager)
        self.observe(namespace, name)
        replicas = int(self._objects[(namespace, name)]["spec"]["replicas"])
        for updated in range(1, replicas):
            self.progress(namespace, name, updated=updated)
        return self.complete(namespace, name)

    def delete_deployment(self, namespace: str, name: str) -> Obj:
        """Delete it (a ``DELETED`` event carrying the last state)."""
        obj = self._objects.pop((namespace, name))
        return self._changed("DELETED", obj)

    def _mutate(self, namespace: str, name: str, change: Callable[[Obj], None]) -> Obj:
        obj = self._objects.get((namespace, name))
        if obj is None:
            raise KeyError(f"no deployment {namespace}/{name}")
        change(obj)
        return self._changed("MODIFIED", obj)

    def _changed(self, kind: str, obj: Obj) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        copy = objects.snapshot(obj)
        self._history.append((self._rv, kind, obj["metadata"]["namespace"], copy))
        if self.compaction_window is not None and len(self._history) > self.compaction_window:
            dropped = self._history[: len(self._history) - self.compaction_window]
            del self._history[: len(dropped)]
            self._compacted = dropped[-1][0]
        for watch in self._watches:
            watch.wake.set()
        return objects.snapshot(copy)

    # ------------------------------------------------------------------ fault injection

    def compact(self) -> None:
        """Forget the whole history: a watch from any version older than now gets 410 Gone."""
        self._history.clear()
        self._compacted = self._rv

    def fail(self, status: int = 503, *, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests (any path, before the token check) with ``status`` and a Status body."""
        self._failures.extend([(status, retry_after)] * times)

    def end_watches(self) -> None:
        """End every open watch stream cleanly (as a server-side timeout does)."""
        self._control("end")

    def drop_watches(self) -> None:
        """Abort every open watch connection mid-stream (no terminating chunk)."""
        self._control("drop")

    def expire_watches(self) -> None:
        """Send ``ERROR`` 410 Expired on every open watch and end it (the watch cache fell too far behind)."""
        self.watch_error(410, f"too old resource version: {self._compacted} ({self._rv})", reason="Expired")

    def watch_error(self, code: int, message: str, *, reason: str | None = None) -> None:
        """Send one ``ERROR`` event with a Status of ``code`` on every open watch, then end it."""
        for watch in self._watches:
            watch.error = status_body(code, message, reason)
            watch.wake.set()

    def _control(self, action: str) -> None:
        for watch in self._watches:
            watch.control = action
            watch.wake.set()

    # ------------------------------------------------------------------ inspection

    def open_watches(self, namespace: str | None = None) -> int:
        """Watch streams open now (on ``namespace``, when given)."""
        return sum(1 for w in self._watches if namespace is None or w.namespace == namespace)

    def watch_requests(self, namespace: str | None = None) -> list[KubeRequest]:
        """Watch requests received (for ``namespace``, when given)."""
        prefix = f"/apis/apps/v1/namespaces/{namespace}/" if namespace else "/"
        return [r for r in self.requests if r.watch and r.path.startswith(prefix)]

    def list_requests(self, namespace: str | None = None) -> list[KubeRequest]:
        """List (non-watch) requests received (for ``namespace``, when given)."""
        prefix = f"/apis/apps/v1/namespaces/{namespace}/" if namespace else "/apis/"
        return [r for r in self.requests if not r.watch and r.path.startswith(prefix)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0, *, what: str = "") -> None:
        """Poll ``predicate`` until true; ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
            await asyncio.sleep(0.005)

    async def wait_watching(self, namespace: str, *, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``namespace`` has ``count`` open watches."""
        await self.wait_for(lambda: self.open_watches(namespace) >= count, timeout, what=f"a watch on {namespace}")

    # ------------------------------------------------------------------ HTTP

    def _refuse(self, request: web.Request) -> web.Response | None:
        """An injected failure or an authentication failure, or ``None``."""
        if self._failures:
            status, retry_after = self._failures.popleft()
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return web.json_response(status_body(status, "injected failure"), status=status, headers=headers)
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(credential.strip(), self.token):
            return web.json_response(status_body(401, "Unauthorized"), status=401)
        return None

    def _log(self, request: web.Request, status: int, *, watch: bool = False) -> None:
        self.requests.append(KubeRequest(request.method, request.path, dict(request.query), status, watch))

    async def _version(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            self._log(request, refused.status)
            return refused
        self._log(request, 200)
        return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-sandbox", "platform": "sandbox"})

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        self._log(request, 404)
        return web.json_response(status_body(404, "the server could not find the requested resource"), status=404)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        if refused is not None:
            self._log(request, refused.status)
            return refused
        key = (request.match_info["namespace"], request.match_info["name"])
        obj = self._objects.get(key)
        if obj is None:
            self._log(request, 404)
            body = status_body(404, f'deployments.apps "{key[1]}" not found')
            return web.json_response(
                body | {"details": {"name": key[1], "group": "apps", "kind": "deployments"}}, status=404
            )
        self._log(request, 200)
        return web.json_response(obj)

    async def _collection(self, request: web.Request) -> web.StreamResponse:
        refused = self._refuse(request)
        watch = request.query.get("watch", "") in _TRUE
        if refused is not None:
            self._log(request, refused.status, watch=watch)
            return refused
        namespace = request.match_info.get("namespace")
        rv = request.query.get("resourceVersion", "")
        if rv and not rv.isdigit():
            self._log(request, 400, watch=watch)
            return web.json_response(status_body(400, f"invalid resource version {rv!r}"), status=400)
        if watch:
            self._log(request, 200, watch=True)
            return await self._stream(request, namespace, rv)
        return self._list(request, namespace)

    def _matching(self, namespace: str | None) -> list[Obj]:
        return [o for (ns, _), o in sorted(self._objects.items()) if namespace is None or ns == namespace]

    def _list(self, request: web.Request, namespace: str | None) -> web.Response:
        limit = int(request.query.get("limit") or 0)
        token = request.query.get("continue", "")
        list_rv, offset = self._rv, 0
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                list_rv, offset = int(state["rv"]), int(state["offset"])
            except (ValueError, KeyError, TypeError):
                self._log(request, 400)
                return web.json_response(status_body(400, "invalid continue token"), status=400)
            if list_rv < self._compacted:
                self._log(request, 410)
                message = "The provided continue parameter is too old to display a consistent list result."
                return web.json_response(status_body(410, message), status=410)
        items = [objects.snapshot(o) for o in self._matching(namespace)]
        for item in items:  # items of a typed list carry no kind/apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        page = items[offset : offset + limit] if limit > 0 else items[offset:]
        metadata: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if limit > 0 and offset + limit < len(items):
            state = json.dumps({"rv": list_rv, "offset": offset + limit}).encode()
            metadata["continue"] = base64.urlsafe_b64encode(state).decode()
            metadata["remainingItemCount"] = len(items) - offset - limit
        self._log(request, 200)
        return web.json_response(
            {"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": metadata, "items": page}
        )

    async def _stream(self, request: web.Request, namespace: str | None, rv: str) -> web.StreamResponse:
        timeout = float(request.query.get("timeoutSeconds") or _DEFAULT_WATCH_TIMEOUT)
        bookmarks = request.query.get("allowWatchBookmarks", "") in _TRUE
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        watch = _Watch(namespace, int(rv) if rv not in ("", "0") else self._rv)
        self._watches.add(watch)
        try:
            if rv in ("", "0"):
                for obj in [objects.snapshot(o) for o in self._matching(namespace)]:
                    await self._send(response, "ADDED", obj)
            await self._follow(request, response, watch, timeout, bookmarks)
        except ConnectionError:
            pass
        finally:
            self._watches.discard(watch)
        return response

    async def _follow(
        self, request: web.Request, response: web.StreamResponse, watch: _Watch, timeout: float, bookmarks: bool
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            watch.wake.clear()
            if watch.control == "drop":  # the connection breaks now: nothing queued gets through
                if request.transport is not None:
                    request.transport.abort()
                return
            if watch.since < self._compacted:
                message = f"too old resource version: {watch.since} ({self._compacted + 1})"
                await self._send(response, "ERROR", status_body(410, message, "Expired"))
                break
            start = bisect.bisect_right(self._history, watch.since, key=lambda entry: entry[0])
            for version, kind, ns, obj in self._history[start:]:
                if watch.namespace is None or ns == watch.namespace:
                    await self._send(response, kind, obj)
                watch.since = version
            if watch.error is not None:
                await self._send(response, "ERROR", watch.error)
                break
            if watch.control == "end":
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if bookmarks:
                    bookmark: Obj = {"kind": "Deployment", "apiVersion": "apps/v1"}
                    bookmark["metadata"] = {"resourceVersion": str(watch.since)}
                    await self._send(response, "BOOKMARK", bookmark)
                break
            if request.transport is None or request.transport.is_closing():
                return  # the client went away
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.wake.wait(), min(remaining, _CLIENT_CHECK))
        await response.write_eof()

    async def _send(self, response: web.StreamResponse, kind: str, obj: Obj) -> None:
        line = (json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n").encode()
        if self.split_lines and len(line) > 1:
            half = len(line) // 2
            await response.write(line[:half])
            await asyncio.sleep(0.001)
            await response.write(line[half:])
        else:
            await response.write(line)
