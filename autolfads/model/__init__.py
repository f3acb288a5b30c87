"""The LFADS model and its parts (lfads-spec §2-3).

``LFADS`` is the LightningModule; the parts (GRU cells, encoders, decoder, priors, reconstructions,
readin/readout, augmentations, metrics) live in their own modules. ``TARGET_ALIASES`` maps every reference
``lfads_torch.…`` model-part ``_target_`` onto ours so reference configs run unchanged.
"""

from autolfads.model.lfads import LFADS, ramp_weight
from autolfads.model.parts import TARGET_ALIASES, map_targets
from autolfads.model.types import SessionOutput, StepResult

__all__ = ["LFADS", "TARGET_ALIASES", "SessionOutput", "StepResult", "map_targets", "ramp_weight"]
