"""A Kubernetes API server for tests: kmock's emulator on 127.0.0.1, taught what kopf and kubectl need.

Plain kmock 0.8 stores objects and serves list/watch/patch, but (k8s-notes §3.1) it does not register
CRDs, stamps no uid/resourceVersion/generation, replays stale watch events, answers a failed JSON-patch
``test`` with 500, lists without kind, says ``/v1`` for the core group, misroutes ``/api/v1/namespaces``,
and has no garbage collector. This module fills those gaps and nothing else:

- a POSTed/PATCHed CustomResourceDefinition registers its resource for discovery (kind, short names,
  scope, subresources), so ``kubectl apply`` of CRs and kopf's watches work;
- objects get a name from ``generateName`` (kopf's Events), uid, creationTimestamp, generation on
  create and a fresh resourceVersion on every write;
  a write to ``spec`` bumps ``metadata.generation`` (what ``observedGeneration`` is compared with);
- watches skip the replay of objects not newer than ``?resourceVersion=``;
- failed JSON-patch ``test`` ops answer 422 (kopf's optimistic locking retries then);
- lists carry kind/apiVersion and a resourceVersion (kubectl insists);
- deleting an object deletes the objects whose ownerReferences name its uid (Kubernetes' GC, background
  propagation), so tests can check what an owner takes with it;
- only the last requests are kept in kmock's request log (it scans the whole log to route each request,
  which made 200 jobs take minutes).

Run it: ``python -m tests.operator.apiserver PORT`` prints ``READY http://127.0.0.1:PORT`` when listening.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import jsonpatch
import kmock
from kmock._internal import parsing as _parsing

_rv_counter = itertools.count(1000)
_last_rv = 999
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
REQUEST_LOG = 64


def _next_rv() -> str:
    global _last_rv
    _last_rv = next(_rv_counter)
    return str(_last_rv)


_kmock_parse_path = _parsing.parse_path


def _parse_path(path: str) -> _parsing.ParsedPath:
    """kmock reads ``/api/v1/namespaces[/NAME]`` as a namespace prefix; route it as the resource."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 5:
        name = parts[3] if len(parts) >= 4 else None
        sub = parts[4] if len(parts) == 5 and parts[4] in ("status", "finalize") else None
        if len(parts) < 5 or sub is not None:
            return _parsing.ParsedPath("", "v1", "namespaces", None, name, sub)
    return _kmock_parse_path(path)


_parsing.parse_path = _parse_path  # kmock's Request._parse looks the function up on the module


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _touches_spec(data: Any) -> bool:
    if isinstance(data, dict):
        return "spec" in data
    if isinstance(data, list):
        return any(str(op.get("path", "")).startswith("/spec") for op in data if isinstance(op, dict))
    return False


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator plus the behaviour listed in the module docstring."""

    async def _handle(self, request: kmock.Request) -> Any:
        # kmock logs every request for assertions and, to route a new one, scans that whole log once per
        # reaction: quadratic in the number of requests. We assert on objects, not requests: keep a tail.
        del self._requests[:-REQUEST_LOG]
        res = request.resource
        if res is not None and isinstance(request.data, dict | list):
            self._stamp(request)
        is_crd = res is not None and (res.group, res.plural) == (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
        )
        if is_crd and request.method in ("POST", "PATCH") and isinstance(request.data, dict):
            self._register_crd(request.data)
        try:
            response = await super()._handle(request)
        except (jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPatchConflict) as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        if res is not None and request.name is not None and request.method in ("DELETE", "PATCH"):
            key = (res, request.namespace, request.name)
            if key in self.objects and self.objects[key].deleted:  # this request finished a deletion
                await self._collect_garbage()
        return response

    def _stamp(self, request: kmock.Request) -> None:
        if request.method == "POST" and request.name is None and isinstance(request.data, dict):
            md = request.data.setdefault("metadata", {})
            if not md.get("name") and md.get("generateName"):  # kopf names its Events this way
                md["name"] = f"{md['generateName']}{uuid.uuid4().hex[:5]}"
            md.setdefault("uid", str(uuid.uuid4()))
            md.setdefault("creationTimestamp", _now())
            md.setdefault("generation", 1)
            md["resourceVersion"] = _next_rv()
            if request.namespace and "namespace" not in md:
                md["namespace"] = request.namespace
        elif request.method == "PATCH" and request.name is not None:
            bump = request.subresource is None and _touches_spec(request.data)
            generation = self._generation(request) + 1 if bump else None
            if isinstance(request.data, list):  # JSON patch: kopf's "test" op comes first
                request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": _next_rv()})
                if generation is not None:
                    request.data.append({"op": "add", "path": "/metadata/generation", "value": generation})
            elif isinstance(request.data.setdefault("metadata", {}), dict):
                request.data["metadata"]["resourceVersion"] = _next_rv()
                if generation is not None:
                    request.data["metadata"]["generation"] = generation

    def _generation(self, request: kmock.Request) -> int:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return 0
        return int(self.objects[key].get("metadata", {}).get("generation") or 1)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        if not names.get("plural"):
            return
        for version in spec.get("versions") or []:
            info = self.resources[f"{spec['group']}/{version['name']}/{names['plural']}"]
            info.kind = names.get("kind")
            info.singular = names.get("singular")
            info.shortnames = set(names.get("shortNames") or [])
            info.categories = set(names.get("categories") or [])
            info.namespaced = spec.get("scope", "Namespaced") == "Namespaced"
            info.verbs = set(VERBS)
            info.subresources = set((version.get("subresources") or {}).keys())

    async def _collect_garbage(self) -> None:
        """Delete dependents of objects that are gone (repeat until nothing more goes)."""
        while True:
            async with self._lock:
                gone = {
                    obj.last.raw.get("metadata", {}).get("uid")
                    for obj in self.objects.values()
                    if obj.deleted and obj.last is not None
                }
                doomed = [
                    (key, obj)
                    for key, obj in self.objects.items()
                    if not obj.deleted
                    and not obj.get("metadata", {}).get("deletionTimestamp")
                    and {o.get("uid") for o in obj.get("metadata", {}).get("ownerReferences") or []} & gone
                ]
                for (resource, _, _), obj in doomed:
                    if obj.get("metadata", {}).get("finalizers"):
                        obj.patch({"metadata": {"deletionTimestamp": _now(), "resourceVersion": _next_rv()}})
                        await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
                    else:
                        raw = obj.raw
                        obj.delete()
                        await self._buses[resource].put({"type": "DELETED", "object": raw})
            if not doomed:
                return

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        try:
            since = int(request.params.get("resourceVersion", ""))
        except ValueError:
            since = None
        async for event in super()._serve_watch(request):
            if since is not None and isinstance(event, dict) and event.get("type") == "ADDED":
                rv = str(event.get("object", {}).get("metadata", {}).get("resourceVersion", ""))
                if rv.isdigit() and int(rv) <= since:
                    continue
            yield event

    async def _serve_version(self, request: kmock.Request) -> Any:
        data = await super()._serve_version(request)
        if data.get("groupVersion", "").startswith("/"):
            data["groupVersion"] = data["groupVersion"][1:]
        return data

    async def _serve_list(self, request: kmock.Request) -> Any:
        data = await super()._serve_list(request)
        res = request.resource
        info = self.resources.get(res, None)
        data["kind"] = (info.kind if info and info.kind else res.plural.capitalize()) + "List"
        data["apiVersion"] = f"{res.group}/{res.version}" if res.group else res.version
        data["metadata"] = {"resourceVersion": str(_last_rv)}
        return data


BUILTINS = [  # (group/version/plural, kind, namespaced, short names)
    ("v1/namespaces", "Namespace", False, {"ns"}),
    ("v1/configmaps", "ConfigMap", True, {"cm"}),
    ("v1/secrets", "Secret", True, set()),
    ("v1/events", "Event", True, {"ev"}),
    ("v1/pods", "Pod", True, {"po"}),
    ("v1/services", "Service", True, {"svc"}),
    ("v1/serviceaccounts", "ServiceAccount", True, {"sa"}),
    ("apps/v1/deployments", "Deployment", True, {"deploy"}),
    ("networking.k8s.io/v1/networkpolicies", "NetworkPolicy", True, {"netpol"}),
    ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition", False, {"crd", "crds"}),
    ("rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole", False, set()),
    ("rbac.authorization.k8s.io/v1/clusterrolebindings", "ClusterRoleBinding", False, set()),
]


def declare_builtins(emulator: kmock.KubernetesEmulator) -> None:
    """Discovery for the built-in kinds kubectl, kopf and the operator touch."""
    for key, kind, namespaced, short in BUILTINS:
        info = emulator.resources[key]
        info.kind, info.namespaced, info.verbs, info.shortnames = kind, namespaced, set(VERBS), set(short)
        info.singular = kind.lower()
        if kind == "CustomResourceDefinition":
            info.subresources = {"status"}


async def serve(port: int) -> None:
    async with Emulator() as emulator, kmock.Server(emulator, port=port) as server:
        declare_builtins(emulator)
        print(f"READY {str(server.url).rstrip('/')}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
