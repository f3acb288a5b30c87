"""Reference (lfads-torch) model-part targets → ours: one table of class names per module, no torch.

``autolfads.model`` re-exports ``TARGET_ALIASES``; it lives here so that reading a reference config
(``autolfads validate``, the Kubernetes operator) does not import torch to map its targets.
"""

from __future__ import annotations

_OURS = "autolfads.model"
# Reference class names per module of ours. Our class names are the reference's, so only modules differ.
_PRIORS = ("MultivariateNormal", "AutoregressiveMultivariateNormal", "MultivariateStudentT", "Null")
_READIN_READOUT = ("FanInLinear", "MultisessionReadin", "MultisessionReadout")
_RECONS = ("Poisson", "PoissonBPS", "MSE", "Gaussian", "Gamma", "ZeroInflatedGamma")
_AUGMENTATIONS = (
    "AugmentationStack",
    "CoordinatedDropout",
    "SampleValidation",
    "TemporalShift",
    "SpikeJitter",
)
# (reference module, our module, class names): the current paths and the old ones that the stale
# single_neurocaas config still names (lfads-spec §0.3).
_REFERENCE_MODULES = (
    ("modules.priors", "priors", _PRIORS),
    ("models.modules.priors", "priors", _PRIORS),
    ("modules.recons", "recons", (*_RECONS, "MultisessionReconstruction")),
    ("models.modules.recons", "recons", _RECONS),
    ("modules.augmentations", "augment", _AUGMENTATIONS),
    ("models.modules.augmentations", "augment", _AUGMENTATIONS),
    ("modules.readin_readout", "readin_readout", _READIN_READOUT),
    ("models.modules.readin_readout", "readin_readout", ("FanInLinear",)),
)
TARGET_ALIASES: dict[str, str] = {
    "lfads_torch.model.LFADS": f"{_OURS}.lfads.LFADS",
    "lfads_torch.models.base_model.LFADS": f"{_OURS}.lfads.LFADS",
    **{
        f"lfads_torch.{module}.{name}": f"{_OURS}.{ours}.{name}"
        for module, ours, names in _REFERENCE_MODULES
        for name in names
    },
}

__all__ = ["TARGET_ALIASES"]
