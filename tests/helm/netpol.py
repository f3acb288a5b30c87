"""Who may connect to whom under a set of NetworkPolicies, by the rules of the Kubernetes API.

A connection from Pod A to Pod B on a port is allowed when B's ingress and A's egress both allow it. A
Pod that no policy of a direction selects is open in that direction; once one selects it, only what some
selecting policy's rule allows goes through. A rule without ``from``/``to`` matches every peer, without
``ports`` every port. A peer with a podSelector alone means Pods of the policy's namespace; with a
namespaceSelector, Pods of the matching namespaces (narrowed by its podSelector); an ipBlock matches by
address. How CNIs treat ``ipBlock`` for Pod addresses differs; this model takes the permissive reading
(an ipBlock matches any address in its CIDR, Pods included), so a test passing here passes on any CNI.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (``{}`` selects everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels[key] in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[op]
        if not ok:
            return False
    return True


def _namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}  # the label the API server sets on every namespace


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(pod.ip)
        cidr = ipaddress.ip_network(block["cidr"])
        if ip.version != cidr.version or ip not in cidr:
            return False
        return not any(
            ip in ipaddress.ip_network(e)
            for e in block.get("except") or []
            if ipaddress.ip_network(e).version == ip.version
        )
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], _namespace_labels(pod.namespace)):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), pod.labels)


def _port_matches(ports: Sequence[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        if "port" not in p:
            return True
        low, high = int(p["port"]), int(p.get("endPort", p["port"]))
        if low <= port <= high:
            return True
    return False


def _direction_allows(
    policies: Iterable[Mapping[str, Any]], pod: Pod, other: Pod, port: int, protocol: str, direction: str
) -> bool:
    """Whether ``pod``'s policies of ``direction`` (Ingress/Egress) let ``other`` in/out on ``port``."""
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key)
            peer_ok = peers is None or any(
                _peer_matches(pr, policy["metadata"]["namespace"], other) for pr in peers
            )
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(
    policies: Sequence[Mapping[str, Any]], src: Pod, dst: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Whether ``src`` may open a connection to ``dst`` on ``port``."""
    return _direction_allows(policies, dst, src, port, protocol, "Ingress") and _direction_allows(
        policies, src, dst, port, protocol, "Egress"
    )
