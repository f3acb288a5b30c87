"""A config is data: the checks that run before anything reads it as more than data (docs/security.md).

Three rules, each refused with one line naming the key, the value and what is allowed:

- **targets**: every ``_target_`` is on the allow-list of :mod:`autolfads.config.targets`;
- **no resolvers**: ``${a.b}`` references between keys are fine; a resolver call (``${oc.env:VAR}``,
  ``${oc.decode:…}``, any ``${name:…}``) is refused, because resolvers run code at resolve time and read
  the process (its environment holds storage credentials) into ``config.yaml`` and MLflow params. The
  reference's ``${relpath:x}`` is expanded as text when the file is read (``autolfads.config.reference``),
  so no resolver is ever needed;
- **known blocks**: only the known top-level keys (a stray ``notes:`` block would be silently ignored and
  travel into MLflow, a typo of ``trainer`` would drop the block).

PURE on purpose (standard library and PyYAML; OmegaConf's grammar parser is imported only to look inside a
string that holds ``${``): the Kubernetes operator runs the same checks on a job's config, ConfigMap and
overrides, so a refused job fails before a RayJob exists.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from autolfads.config.targets import TARGET_KEY, target_problem, target_problems
from autolfads.errors import ConfigError, clipped

TOP_LEVEL_KEYS = ("model", "datamodule", "trainer", "posterior_sampling", "pbt", "seed", "ignore_warnings")
INTERPOLATION_OPEN = "${"
_RESOLVER_HELP = (
    "resolvers are refused (a config is data); only references to other keys such as ${model.fac_dim} work"
)


def iter_strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """``(config path, value)`` of every string value in a tree of mappings and lists."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from iter_strings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from iter_strings(value, f"{where}.{i}" if where else str(i))


def resolver_calls(text: str) -> list[str] | None:
    """The resolver calls in one string (``["${oc.env:HOME}"]``), [] for none, None if it is not valid
    interpolation syntax. Uses OmegaConf's own grammar, so what is found is exactly what would run."""
    if INTERPOLATION_OPEN not in text:
        return []
    from omegaconf import grammar_parser
    from omegaconf.errors import GrammarParseError
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

    try:
        tree = grammar_parser.parse(text)
    except GrammarParseError:
        return None
    found: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, OmegaConfGrammarParser.InterpolationResolverContext):
            found.append(node.getText())
        stack.extend(node.getChild(i) for i in range(getattr(node, "getChildCount", lambda: 0)()))
    return found


def resolver_problem(path: str, text: str) -> str | None:
    """One line when ``text`` calls a resolver (or is broken interpolation syntax), else None."""
    calls = resolver_calls(text)
    if calls is None:
        return f"{path}: '{clipped(text)}' is not valid interpolation syntax ({_RESOLVER_HELP})"
    if calls:
        return f"{path}: '{clipped(calls[0])}' calls a resolver; {_RESOLVER_HELP}"
    return None


def resolver_problems(node: Any, where: str = "") -> list[str]:
    """Every string value of ``node`` that calls a resolver, one line each."""
    return [p for path, text in iter_strings(node, where) if (p := resolver_problem(path, text))]


def top_level_problems(cfg: Mapping[str, Any], source: str = "config") -> list[str]:
    """One line per top-level key that is not a known block, with a suggestion when one is close."""
    problems = []
    for key in cfg:
        if key in TOP_LEVEL_KEYS:
            continue
        close = difflib.get_close_matches(str(key), TOP_LEVEL_KEYS, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(TOP_LEVEL_KEYS)}"
        problems.append(f"{source}: unknown top-level key '{clipped(str(key), 60)}' ({hint})")
    return problems


def data_problems(node: Any, where: str = "") -> list[str]:
    """Targets and resolvers of a config (or any part of one), one line per problem."""
    return target_problems(node, where) + resolver_problems(node, where)


def check_data(node: Any, where: str = "", source: str = "config") -> None:
    """Raise one ConfigError for the first target or resolver problem in ``node``."""
    problems = data_problems(node, where)
    if problems:
        raise ConfigError(f"{source}: {problems[0]}")


def override_problems(overrides: Sequence[str], where: str = "overrides") -> list[str]:
    """The same rules for ``KEY=VALUE`` overrides, one line per problem, naming ``where[i]`` and the item."""
    problems = []
    for i, item in enumerate(overrides):
        if isinstance(item, str):  # the spec's own shape check reports anything else
            key, _, raw = item.partition("=")
            shown = clipped(item, 80)
            problems += [f"{where}[{i}] '{shown}': {p}" for p in override_value_problems(key, raw)]
    return problems


def override_value_problems(key: str, raw: str) -> list[str]:
    """Problems of one override, its value read as the run reads it (YAML).

    A key ending in ``_target_`` must name an allowed target; a mapping or list value is searched for
    targets; no string in the value may call a resolver.
    """
    key = key.strip().lstrip("+")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if key == TARGET_KEY or key.endswith(f".{TARGET_KEY}"):
        problem = target_problem(key, value)
        found = [problem] if problem else []
    else:
        found = target_problems(value, key)
    return found + resolver_problems(value, key)


__all__ = [
    "TOP_LEVEL_KEYS",
    "check_data",
    "data_problems",
    "iter_strings",
    "override_problems",
    "override_value_problems",
    "resolver_calls",
    "resolver_problems",
    "top_level_problems",
]
