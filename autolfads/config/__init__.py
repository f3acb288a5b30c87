"""autolfads.config: run configs (shipped defaults, loading, overrides, the reference format).

``load_config`` and ``save_resolved_config`` are imported on first use, so that ``import
autolfads.config.pbt`` (which the Kubernetes operator does) stays free of OmegaConf, h5py and torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autolfads.config.loader import DEFAULT_CONFIG, load_config, save_resolved_config

__all__ = ["DEFAULT_CONFIG", "load_config", "save_resolved_config"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from autolfads.config import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'autolfads.config' has no attribute {name!r}")
