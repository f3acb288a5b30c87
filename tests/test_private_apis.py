"""Private APIs of our dependencies that the code still relies on: each one listed, each one checked.

pyproject.toml caps Ray, Hydra, kopf and MLflow at the minors we test, but a private name can change in
any release; this test makes such a change fail loudly, naming the API, instead of surfacing as an
AttributeError in the middle of a PBT run. It scans autolfads/ and operators/ for imports from private
modules and for underscore attributes our own code never defines, and requires each to be listed in
PRIVATE_APIS with a check against the installed library. Replacing one with a public API only needs
the entry deleted (an entry the code no longer uses is not checked).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("autolfads", "operators") for p in sorted((REPO / d).rglob("*.py"))]
# Underscore names that are public by convention: namedtuple's API and Hydra's instantiate keys.
PUBLIC_BY_CONVENTION = {"_replace", "_asdict", "_fields", "_make", "_target_", "_recursive_", "_convert_"}


def _source_of(dotted: str) -> str:
    module, _, attr = dotted.rpartition(".")
    return inspect.getsource(getattr(importlib.import_module(module), attr))


def _importable(module: str, name: str) -> Callable[[], bool]:
    return lambda: hasattr(importlib.import_module(module), name)


def _set_in(dotted_class: str, attr: str) -> Callable[[], bool]:
    """The attribute is assigned somewhere in the class's source (an instance attribute)."""
    return lambda: f"self.{attr} =" in _source_of(dotted_class) or f"self.{attr}:" in _source_of(dotted_class)


_TUNE_CONTROLLER = "ray.tune.execution.tune_controller.TuneController"
_ACTOR_MANAGER = "ray.air.execution._internal.actor_manager"

# private name -> (what it is, a check that holds on the versions the code works with)
PRIVATE_APIS: dict[str, tuple[str, Callable[[], bool]]] = {
    "ray._raylet": (
        "Ray's Config.initialize, to re-read RAY_AUTH_MODE set after import (as Ray's own token setup does)",
        lambda: hasattr(importlib.import_module("ray._raylet").Config, "initialize"),
    ),
    "_trial_state": (
        "PopulationBasedTraining's per-trial state",
        _set_in("ray.tune.schedulers.PopulationBasedTraining", "_trial_state"),
    ),
    "_save_trial_state": (
        "PopulationBasedTraining's checkpoint bookkeeping",
        lambda: "def _save_trial_state(" in _source_of("ray.tune.schedulers.PopulationBasedTraining"),
    ),
    "_latest_checkpoint_result": (
        "a trial's latest checkpoint, set by PopulationBasedTraining's exploit; the scheduler sets it the "
        "same way for a member lost before its boundary save was handled",
        _set_in("ray.train._internal.checkpoint_manager._CheckpointManager", "_latest_checkpoint_result"),
    ),
    "ray.train._internal.session": (
        "_TrainingResult and _FutureTrainingResult, the checkpoint records PopulationBasedTraining keeps",
        lambda: all(
            hasattr(importlib.import_module("ray.train._internal.session"), name)
            for name in ("_TrainingResult", "_FutureTrainingResult")
        ),
    ),
    "_metric": ("the scheduler's metric", _set_in("ray.tune.schedulers.PopulationBasedTraining", "_metric")),
    "_mode": ("the scheduler's mode", _set_in("ray.tune.schedulers.PopulationBasedTraining", "_mode")),
    "_time_attr": (
        "PopulationBasedTraining's time attribute",
        _set_in("ray.tune.schedulers.PopulationBasedTraining", "_time_attr"),
    ),
    "_request": (
        "MLflow's AuthServiceClient request helper, for the auth app's current-user and list-users routes "
        "that the client does not wrap (mlflow_admin)",
        lambda: callable(
            getattr(importlib.import_module("mlflow.server.auth.client").AuthServiceClient, "_request", None)
        ),
    ),
    "ray._private.grpc_utils": (
        "Ray's GCS channel with its token interceptor, for the one-line token check before ray.init",
        _importable("ray._private.grpc_utils", "init_grpc_channel"),
    ),
    "_dynamo": (
        "torch's compiler front end: is_dynamo_supported (can torch.compile work here) and "
        "maybe_mark_dynamic (one graph for every batch size) in the compiled loops",
        lambda: all(
            hasattr(importlib.import_module("torch._dynamo"), name)
            for name in ("is_dynamo_supported", "maybe_mark_dynamic")
        ),
    ),
    "_functorch": (
        "torch's functorch config: force_non_lazy_backward_lowering, so a compile failure shows at the call",
        _importable("torch._functorch.config", "force_non_lazy_backward_lowering"),
    ),
    "torch._inductor.cpp_builder": (
        "inductor's C++ compiler lookup, to fall back to eager loops where none is installed",
        _importable("torch._inductor.cpp_builder", "get_cpp_compiler"),
    ),
    "torch.utils._triton": (
        "torch's triton probe, to fall back to eager loops on a GPU without a working triton",
        _importable("torch.utils._triton", "has_triton"),
    ),
    "_trainer": (
        "LightningModule's trainer reference (None before fit)",
        _set_in("lightning.pytorch.core.module.LightningModule", "_trainer"),
    ),
    # Ray Tune's controller, for keeping the processes of members that wait for a tournament
    # (autolfads/tune/actor_reuse.py wraps TuneController._maybe_cache_trial_actor, which uses these).
    "_scheduler_alg": ("TuneController's scheduler", _set_in(_TUNE_CONTROLLER, "_scheduler_alg")),
    "_reuse_actors": ("TuneController's reuse_actors setting", _set_in(_TUNE_CONTROLLER, "_reuse_actors")),
    "_trial_to_actor": ("trial -> process map", _set_in(_TUNE_CONTROLLER, "_trial_to_actor")),
    "_actor_to_trial": ("process -> trial map", _set_in(_TUNE_CONTROLLER, "_actor_to_trial")),
    "_started_actors": ("TuneController's started processes", _set_in(_TUNE_CONTROLLER, "_started_actors")),
    "_actor_manager": (
        "TuneController's actor manager (is_actor_started, is_actor_failed)",
        lambda: _set_in(_TUNE_CONTROLLER, "_actor_manager")()
        and all(
            hasattr(importlib.import_module(_ACTOR_MANAGER).RayActorManager, name)
            for name in ("is_actor_started", "is_actor_failed")
        ),
    ),
    "_actor_cache": (
        "TuneController's cache of processes kept for reuse (increase_max, decrease_max, cache_object)",
        lambda: _set_in(_TUNE_CONTROLLER, "_actor_cache")()
        and all(
            hasattr(importlib.import_module("ray.tune.utils.object_cache")._ObjectCache, name)
            for name in ("increase_max", "decrease_max", "cache_object")
        ),
    ),
}


def _is_private_module(module: str | None) -> bool:
    return bool(module) and module != "__future__" and any(p.startswith("_") for p in str(module).split("."))


def _is_private_name(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__") and attr not in PUBLIC_BY_CONVENTION


def private_names_in_code() -> dict[str, list[str]]:
    """{private module or attribute: ["file:line", ...]} that our code uses but does not define."""
    defined: set[str] = set()
    uses: dict[str, list[str]] = {}
    trees = {path: ast.parse(path.read_text()) for path in SOURCES}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                defined.add(node.attr)
    for path, tree in trees.items():
        where = str(path.relative_to(REPO))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_private_module(node.module):
                uses.setdefault(str(node.module), []).append(f"{where}:{node.lineno}")
            elif isinstance(node, ast.Attribute) and _is_private_name(node.attr) and node.attr not in defined:
                uses.setdefault(node.attr, []).append(f"{where}:{node.lineno}")
    return uses


def test_every_private_api_the_code_uses_is_listed() -> None:
    unlisted = {name: where for name, where in private_names_in_code().items() if name not in PRIVATE_APIS}
    assert unlisted == {}, (
        "the code uses private APIs of a dependency: use a public one, or list each in PRIVATE_APIS"
    )


def test_the_installed_libraries_still_have_the_private_apis_the_code_uses() -> None:
    used = private_names_in_code()
    changed = [f"{name} ({PRIVATE_APIS[name][0]}), used at {used[name][0]}"
               for name in used if name in PRIVATE_APIS and not PRIVATE_APIS[name][1]()]  # fmt: skip
    assert changed == [], "a dependency changed a private API the code relies on: " + "; ".join(changed)
