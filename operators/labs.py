"""Which namespaces are labs, and what each lab may use: the operator's labs file.

A lab is a namespace the cluster admin declared (Helm values ``labs:``). The chart renders the
declarations into a YAML file (ConfigMap ``<release>-autolfads-labs``, key ``labs.yaml``) that is mounted
into the operator and named by ``$AUTOLFADS_LABS_FILE``. Why a mounted file and not, say, a watched
ConfigMap or namespace labels:

- it needs no RBAC at all (the kubelet mounts it), and nothing a lab can write reaches it: labels on a
  namespace or objects in it could be set by whoever administers that namespace;
- it is one document the admin reviews in ``helm template``, the same text for the chart and the plain
  manifests (``k8s/operator/labs-configmap.yaml``);
- the kubelet refreshes a mounted ConfigMap in place, so ``helm upgrade`` with a changed lab reaches the
  running operator within a minute; :class:`PolicyFile` re-reads the file whenever its bytes change and
  keeps the last good policy if an edit breaks it.

What a lab's jobs may do with it is decided in ``operators.admission``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LABS_FILE_ENV = "AUTOLFADS_LABS_FILE"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")

log = logging.getLogger(__name__)


class PolicyError(ValueError):
    """The labs file is missing or malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Lab:
    """One lab: its namespace and what its jobs may use (one entry of the labs file)."""

    name: str
    namespace: str
    ray_cluster: str | None = None  # the lab's Helm-deployed RayCluster; None: dedicated clusters only
    driver_slots: int = 0  # drivers the lab's head runs at once (Ray resource DRIVER_RESOURCE); 0: no limit
    storage_secrets: tuple[str, ...] = ()  # first: the one the lab's Ray cluster carries
    allowed_prefixes: tuple[str, ...] = ()
    mlflow_experiment: str | None = None
    mlflow_credentials_secret: str | None = None  # Secret in the lab namespace: MLFLOW_TRACKING_* vars
    default_deadline_seconds: int | None = None
    max_deadline_seconds: int | None = None
    queue_name: str | None = None  # Kueue LocalQueue of the lab (used when Kueue's API is present)
    images: tuple[str, ...] = ()  # images allowed in this lab besides the platform's

    @property
    def cluster_secret(self) -> str | None:
        """The storage Secret the lab's own Ray cluster carries (jobs on it can use no other)."""
        return self.storage_secrets[0] if self.storage_secrets else None


@dataclass(frozen=True)
class Policy:
    """The whole labs file: the labs by namespace plus what holds for every lab."""

    labs: Mapping[str, Lab] = field(default_factory=dict)  # by namespace
    default_image: str | None = None
    allowed_images: tuple[str, ...] = ()
    mlflow_uri: str | None = None
    kuberay_peers: tuple[Mapping[str, Any], ...] = ()  # NetworkPolicy peers of the KubeRay operator
    metrics_peers: tuple[Mapping[str, Any], ...] = ()  # NetworkPolicy peers allowed to scrape metrics

    def lab_for(self, namespace: str) -> Lab | None:
        return self.labs.get(namespace)

    def images_for(self, lab: Lab) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.allowed_images, *lab.images]))


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Parse and check the labs file; :class:`PolicyError` names the file and the first bad key."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the labs file: {exc.strerror or exc}") from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, where: str = "labs.yaml") -> Policy:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where}: not valid YAML: {exc}") from exc
    data = _mapping(data or {}, where)
    images = _mapping(data.get("images") or {}, f"{where}: images")
    mlflow = _mapping(data.get("mlflow") or {}, f"{where}: mlflow")
    network = _mapping(data.get("networkPolicy") or {}, f"{where}: networkPolicy")
    labs: dict[str, Lab] = {}
    names: set[str] = set()
    for i, raw in enumerate(_sequence(data.get("labs") or [], f"{where}: labs")):
        lab = _parse_lab(_mapping(raw, f"{where}: labs[{i}]"), f"{where}: labs[{i}]")
        if lab.namespace in labs:
            other = labs[lab.namespace].name
            raise PolicyError(f"{where}: labs[{i}].namespace: {lab.namespace!r} is already lab {other!r}")
        if lab.name in names:
            raise PolicyError(f"{where}: labs[{i}].name: {lab.name!r} is declared twice")
        labs[lab.namespace] = lab
        names.add(lab.name)
    _check_prefixes_disjoint(labs.values(), where)
    default_image = images.get("default") or None
    allowed = tuple(_strings(images.get("allowed") or [], f"{where}: images.allowed"))
    if default_image is not None and default_image not in allowed:
        allowed = (str(default_image), *allowed)
    return Policy(
        labs=labs,
        default_image=None if default_image is None else str(default_image),
        allowed_images=allowed,
        mlflow_uri=mlflow.get("trackingURI") or None,
        kuberay_peers=tuple(_peers(network, "kuberayOperator", where)),
        metrics_peers=tuple(_peers(network, "metrics", where)),
    )


def _parse_lab(raw: Mapping[str, Any], where: str) -> Lab:
    name = raw.get("name")
    if not isinstance(name, str) or not _DNS_LABEL.match(name):
        raise PolicyError(f"{where}.name: expected a DNS label (a-z, 0-9, '-'), got {name!r}")
    namespace = raw.get("namespace") or name
    if not isinstance(namespace, str) or not _DNS_LABEL.match(namespace):
        raise PolicyError(f"{where}.namespace: expected a namespace name, got {namespace!r}")
    storage = _mapping(raw.get("storage") or {}, f"{where}.storage")
    mlflow = _mapping(raw.get("mlflow") or {}, f"{where}.mlflow")
    jobs = _mapping(raw.get("jobs") or {}, f"{where}.jobs")
    prefixes = tuple(_strings(storage.get("allowedPrefixes") or [], f"{where}.storage.allowedPrefixes"))
    for prefix in prefixes:
        if not _SCHEME.match(prefix) or not prefix.endswith("/") or has_unsafe_segments(prefix):
            raise PolicyError(
                f"{where}.storage.allowedPrefixes: expected a URI ending in '/' (s3://bucket/lab/), "
                f"got {prefix!r}"
            )
    return Lab(
        name=name,
        namespace=namespace,
        ray_cluster=raw.get("rayCluster") or None,
        driver_slots=_int(raw.get("driverSlots", 0), f"{where}.driverSlots"),
        storage_secrets=tuple(_strings(storage.get("secrets") or [], f"{where}.storage.secrets")),
        allowed_prefixes=prefixes,
        mlflow_experiment=mlflow.get("experiment") or None,
        mlflow_credentials_secret=mlflow.get("credentialsSecret") or None,
        default_deadline_seconds=_optional_int(jobs.get("defaultActiveDeadlineSeconds"), f"{where}.jobs"),
        max_deadline_seconds=_optional_int(jobs.get("maxActiveDeadlineSeconds"), f"{where}.jobs"),
        queue_name=jobs.get("queueName") or None,
        images=tuple(_strings(raw.get("images") or [], f"{where}.images")),
    )


def _check_prefixes_disjoint(labs: Iterable[Lab], where: str) -> None:
    """No lab may reach into another lab's storage: no prefix may contain another lab's."""
    owned = [(prefix, lab.name) for lab in labs for prefix in lab.allowed_prefixes]
    for prefix, lab in owned:
        for other, other_lab in owned:
            if lab != other_lab and other.startswith(prefix):
                raise PolicyError(
                    f"{where}: lab {lab!r} storage prefix {prefix!r} contains lab {other_lab!r}'s {other!r}"
                )


def _peers(network: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    peers = _sequence(network.get(key) or [], f"{where}: networkPolicy.{key}")
    return [_mapping(p, f"{where}: networkPolicy.{key}[]") for p in peers]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _sequence(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    items = _sequence(value, where)
    if not all(isinstance(v, str) and v for v in items):
        raise PolicyError(f"{where}: expected a list of non-empty strings, got {items!r}")
    return list(items)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{where}: expected a whole number >= 0, got {value!r}")
    return value


def _optional_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


class PolicyFile:
    """The labs file as the operator sees it now: re-read whenever its content changes.

    A change that does not parse is logged and ignored (the last good policy stays in force), so a bad
    ``helm upgrade`` never opens the operator up; the file must parse once, at start-up.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._digest = ""
        self._policy = load_policy(self.path)
        self._digest = self._read_digest() or ""

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def current(self) -> Policy:
        digest = self._read_digest()
        if digest is not None and digest != self._digest:
            try:
                self._policy = load_policy(self.path)
            except PolicyError as exc:
                log.error(f"{exc}; keeping the labs policy read before")
            self._digest = digest
        return self._policy


def policy_file_from_env(env: Mapping[str, str] | None = None) -> PolicyFile:
    env = os.environ if env is None else env
    path = env.get(LABS_FILE_ENV)
    if not path:
        raise PolicyError(
            f"${LABS_FILE_ENV} is not set: the operator needs the labs file (the Helm chart mounts it; "
            "k8s/operator/labs-configmap.yaml for the plain manifests)"
        )
    return PolicyFile(path)


def has_unsafe_segments(uri: str) -> bool:
    """Segments that a store or fsspec might resolve differently from the plain string prefix check."""
    if any(c in uri for c in "?#\\") or "%2" in uri.lower():
        return True
    scheme, _, rest = uri.partition("://")
    segments = rest.split("/")
    if scheme.lower() == "file":  # file:///abs/path: the authority is empty
        segments = segments[1:]
    body = segments[:-1] if segments and segments[-1] == "" else segments  # a trailing '/' is fine
    return any(s in ("", ".", "..") for s in body)
