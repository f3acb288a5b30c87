"""What the CRD schema cannot check, in one pass with one line per problem.

The API server enforces the schema's types, ranges and patterns (and, on clusters with CEL, the
either/or rules); an emulator or an older server may not, so the same rules are repeated here cheaply.
Beyond the schema: the config must be a YAML mapping of known blocks, and the config the run will see
(shipped defaults ← the job's config ← the spec's sizing ← ``spec.overrides``) must pass
``autolfads.config.validate.job_config_problems`` — the very checks ``autolfads validate``/``run`` make
before reading data (every block, type and range, the ``pbt`` block, trainer keys, sizes no machine could
hold), so a bad job fails in seconds instead of after a Ray cluster has started.

Every message names the field (``spec.population``, ``spec.config.pbt.num_samples``,
``ConfigMap lab/cfg key config.yaml``), what was expected and what was found.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml

from operators import render
from operators.spec import DEFAULT_GPUS_PER_TRIAL, DEFAULT_POPULATION

URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")
OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=.*$")
CONFIG_BLOCKS = ("model", "datamodule", "trainer", "pbt", "callbacks", "logger")


def validate_spec(spec: Mapping[str, Any]) -> list[str]:
    """Problems with the spec itself (no API calls). Empty when the spec is acceptable."""
    problems: list[str] = []
    for field in ("dataURI", "outputURI"):
        value = spec.get(field)
        if not isinstance(value, str) or not URI.match(value):
            problems.append(f"spec.{field}: expected a URI with a scheme (s3://bucket/key), got {value!r}")
    mlflow_uri = (spec.get("mlflow") or {}).get("trackingURI")
    if mlflow_uri is not None and not (isinstance(mlflow_uri, str) and URI.match(mlflow_uri)):
        problems.append(f"spec.mlflow.trackingURI: expected a URI (http://host:5000), got {mlflow_uri!r}")
    if "config" in spec and "configMapRef" in spec:
        problems.append("spec.config and spec.configMapRef: give the config one way, not both")
    if "config" in spec and not isinstance(spec["config"], Mapping):
        found = type(spec["config"]).__name__
        problems.append(f"spec.config: expected a mapping of config blocks, got {found}")
    if "configMapRef" in spec and not (spec.get("configMapRef") or {}).get("name"):
        problems.append("spec.configMapRef.name: expected the name of a ConfigMap, got nothing")
    problems += _check_number(spec, "population", int, low=2, high=1024)
    problems += _check_number(spec, "gpusPerTrial", float, low=0, high=1, low_open=True)
    problems += _check_number(spec, "cpusPerTrial", float, low=0, high=64, low_open=True)
    problems += _check_number(spec, "maxEpochs", int, low=1, high=100000)
    problems += _check_number(spec, "activeDeadlineSeconds", int, low=1, high=31536000)
    problems += _check_number(spec, "backoffLimit", int, low=0, high=10)
    for i, item in enumerate(spec.get("overrides") or []):
        if not isinstance(item, str) or not OVERRIDE.match(item):
            problems.append(f"spec.overrides[{i}]: expected KEY=VALUE (model.gen_dim=128), got {item!r}")
    dedicated = "dedicatedCluster" in spec
    if dedicated and "rayClusterName" in spec:
        problems.append(
            "spec.rayClusterName and spec.dedicatedCluster: choose the shared cluster or a dedicated one"
        )
    if not dedicated and (spec.get("backoffLimit") or 0) > 0:
        problems.append(
            f"spec.backoffLimit: {spec['backoffLimit']} needs spec.dedicatedCluster "
            "(KubeRay retries a job by creating a new cluster; use 0 on the shared cluster)"
        )
    if not dedicated and spec.get("suspend"):
        problems.append(
            "spec.suspend: needs spec.dedicatedCluster (KubeRay suspends only jobs owning their cluster)"
        )
    if isinstance(spec.get("config"), Mapping):
        problems += validate_config(spec["config"], spec, "spec.config")
    elif "config" not in spec and "configMapRef" not in spec and not problems:
        problems += validate_config({}, spec, "spec.overrides")  # the shipped defaults + the overrides
    return problems


def _check_number(
    spec: Mapping[str, Any], field: str, kind: type, *, low: float, high: float, low_open: bool = False
) -> list[str]:
    if field not in spec:
        return []
    value = spec[field]
    ok_type = isinstance(value, int | float) if kind is float else isinstance(value, int)
    if isinstance(value, bool) or not ok_type:
        return [f"spec.{field}: expected {'a number' if kind is float else 'an integer'}, got {value!r}"]
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bound = f"> {low:g}" if low_open else f">= {low:g}"
        return [f"spec.{field}: expected {bound} and <= {high:g}, got {value!r}"]
    return []


def parse_config_text(text: str, where: str) -> tuple[Mapping[str, Any] | None, list[str]]:
    """YAML text from a ConfigMap → mapping, or a one-line problem naming ``where``.

    Values are read as the run reads the file (OmegaConf's YAML rules: ``1e-3`` is a number, not the
    string plain YAML 1.1 makes of it), so the checks see what the run will see.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        return None, [f"{where}: not valid YAML{at}: {getattr(exc, 'problem', exc)}"]
    if data is None:
        return {}, []
    if not isinstance(data, Mapping):
        return None, [f"{where}: expected a mapping of config blocks, got {type(data).__name__}"]
    return _as_the_run_reads(text, data), []


def _as_the_run_reads(text: str, data: Mapping[str, Any]) -> Mapping[str, Any]:
    try:
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException
    except ImportError:  # pragma: no cover - omegaconf ships with autolfads
        return data
    try:
        loaded = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError):
        return data  # the run's own loader will name the problem; the plain reading is checked meanwhile
    return loaded if isinstance(loaded, Mapping) else data


def validate_config(config: Mapping[str, Any], spec: Mapping[str, Any], where: str) -> list[str]:
    """The config's blocks are mappings, and the whole config the run will see passes the run's checks."""
    problems = []
    for block in CONFIG_BLOCKS:
        if block in config and config[block] is not None and not isinstance(config[block], Mapping):
            problems.append(f"{where}.{block}: expected a mapping, got {type(config[block]).__name__}")
    if problems:
        return problems
    return [_placed(where, p) for p in _job_problems(config, job_overrides(spec))]


def job_overrides(spec: Mapping[str, Any]) -> list[str]:
    """The overrides the rendered entrypoint passes (``operators.render.run_overrides``), from a raw spec."""
    out = [
        f"{render.POPULATION_KEY}={spec.get('population', DEFAULT_POPULATION)}",
        f"{render.GPUS_KEY}={spec.get('gpusPerTrial', DEFAULT_GPUS_PER_TRIAL)}",
    ]
    if "cpusPerTrial" in spec:
        out.append(f"{render.CPUS_KEY}={spec['cpusPerTrial']}")
    if spec.get("maxEpochs") is not None:
        out.append(f"{render.MAX_EPOCHS_KEY}={spec['maxEpochs']}")
    return out + [str(item) for item in spec.get("overrides") or []]


def _job_problems(config: Mapping[str, Any], overrides: list[str]) -> list[str]:
    try:
        from autolfads.config.validate import job_config_problems
    except ImportError:  # an image without the config checks: the pbt block alone, as before
        return _check_pbt(_merged(_default_pbt_block(), config.get("pbt") or {}), "pbt")
    return job_config_problems(config, overrides)


_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:")


def _placed(where: str, problem: str) -> str:
    """``spec.config`` + ``model.lr_init: ...`` → ``spec.config.model.lr_init: ...``; other sources keep
    their own wording after ``where: ``."""
    if where.startswith("spec.config") and _FIELD.match(problem):
        return f"{where}.{problem}"
    return f"{where}: {problem}"


@cache
def _default_pbt_block() -> dict[str, Any]:
    """The shipped defaults' ``pbt`` block (read as plain YAML: no OmegaConf, no data file needed)."""
    try:
        text = (resources.files("autolfads.config") / "defaults" / "lfads.yaml").read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return {}
    return dict((yaml.safe_load(text) or {}).get("pbt") or {})


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key (as the run's config loader does); anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def effective_pbt_block(config: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ``pbt`` block the run will see: shipped defaults ← the config's ← the spec's sizing ←
    ``pbt.*`` overrides."""
    block = _merged(_default_pbt_block(), config.get("pbt") or {})
    sizing = [
        f"{render.POPULATION_KEY}={spec.get('population', DEFAULT_POPULATION)}",
        f"{render.GPUS_KEY}={spec.get('gpusPerTrial', DEFAULT_GPUS_PER_TRIAL)}",
    ]
    if "cpusPerTrial" in spec:
        sizing.append(f"{render.CPUS_KEY}={spec['cpusPerTrial']}")
    for item in [*sizing, *(spec.get("overrides") or [])]:
        if not isinstance(item, str) or not item.startswith("pbt."):
            continue
        key, _, raw = item.partition("=")
        node = block
        *parents, leaf = key.split(".")[1:]
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[leaf] = yaml.safe_load(raw) if raw else None
    return block


def _check_pbt(block: Mapping[str, Any], where: str) -> list[str]:
    try:
        from autolfads.config.pbt import parse_pbt_block
    except ImportError:  # the PBT settings parser ships with autolfads.tune's config; older images lack it
        return []
    from autolfads.errors import ConfigError

    try:
        parse_pbt_block(block, where=where)
    except ConfigError as exc:
        return [str(exc)]
    return []
