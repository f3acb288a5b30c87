"""Validate custom resources against a CRD's ``openAPIV3Schema`` offline, as ``kubectl --validate=strict``.

Kubernetes' structural schemas are OpenAPI 3.0; jsonschema speaks Draft 2020-12. ``to_jsonschema`` bridges
the differences that matter (k8s-notes §4): ``nullable``, boolean ``exclusiveMinimum/Maximum``, and, with
``strict=True``, ``additionalProperties: false`` wherever an object lists its ``properties`` and does not
preserve unknown fields — the server would prune those fields silently, which hides typos. CEL rules
(``x-kubernetes-validations``) are not evaluated; the operator repeats them in ``operators.validation``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [d for d in yaml.load_all(f, Loader=yaml.CSafeLoader) if d]


def crd_schema(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(f"{crd['metadata']['name']} has no version {version}")


def to_jsonschema(schema: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    out = copy.deepcopy(dict(schema))
    _convert(out, strict)
    return out


def _convert(node: Any, strict: bool) -> None:
    if isinstance(node, list):
        for item in node:
            _convert(item, strict)
        return
    if not isinstance(node, dict):
        return
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), bool) and node.pop(bound):
            node[bound] = node.pop(limit)
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    if (
        strict
        and "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs", "definitions"):
            for sub in value.values():
                _convert(sub, strict)
        elif key in ("items", "additionalProperties", "not", "anyOf", "allOf", "oneOf"):
            _convert(value, strict)


class CRDValidator:
    """jsonschema validators for the kinds of one or more CRDs, keyed by (apiVersion, kind)."""

    def __init__(self, crds: list[Mapping[str, Any]], strict: bool = True) -> None:
        self._validators: dict[tuple[str, str], jsonschema.Draft202012Validator] = {}
        for crd in crds:
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                schema = to_jsonschema(v["schema"]["openAPIV3Schema"], strict)
                self._validators[(f"{group}/{v['name']}", kind)] = jsonschema.Draft202012Validator(schema)

    def errors(self, obj: Mapping[str, Any]) -> list[str]:
        """One line per problem, ``spec.field.path: message``; empty when the object is valid."""
        validator = self._validators[(obj["apiVersion"], obj["kind"])]
        return [f"{_path(e)}: {e.message}" for e in _all(validator, obj)]


def _all(validator: jsonschema.Draft202012Validator, obj: Mapping[str, Any]) -> Iterator[Any]:
    yield from sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<root>"
