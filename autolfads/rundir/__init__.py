"""autolfads.rundir: how a run owns its output location (``--out``), local or ``s3://``.

- ``lease``: one run at a time per OUT (a lock file, or a conditional-write lease object with expiry);
- ``fingerprint``: ``OUT/fingerprint.json``, what the run started with, so ``--resume`` continues only it;
- ``done``: ``OUT/DONE.json``, written last, with the checksums of the outputs;
- ``layout``: which names in OUT are results (the only ones ever replaced), stale temporaries;
- ``claim``: all of it in order, before anything (tracking included) writes into OUT.

Torch-free and Ray-free: the CLI claims OUT before it imports either, so a refusal is quick.
"""

from autolfads.rundir.claim import Claim, claim_out
from autolfads.rundir.done import read_done
from autolfads.rundir.fingerprint import compute_fingerprint
from autolfads.rundir.lease import LeaseHeld, acquire_lease

__all__ = ["Claim", "LeaseHeld", "acquire_lease", "claim_out", "compute_fingerprint", "read_done"]
