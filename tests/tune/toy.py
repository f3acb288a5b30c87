"""A tiny trainable that follows the trial protocol of ``autolfads.tune`` without torch.

It is not a double of our code: the scheduler, driver and Ray are real; only the "model" is a scalar
``x`` that shrinks by a factor (1 - lr) per epoch, so a larger learning rate wins tournaments and the
exploits are predictable. Its state (x, epoch, a smoothed metric) lives in its checkpoint, like LFADS's.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time

from ray import tune

from autolfads.config.pbt import PBTSettings, parse_pbt_block

LR = "model.lr_init"


def toy_settings(num_samples=4, interval=2, burn_in=2, **extra):
    block = {
        "num_samples": num_samples,
        "perturbation_interval": interval,
        "burn_in_period": burn_in,
        "resources_per_trial": {"cpu": 0.5, "gpu": 0},
        "hps": {
            LR: {
                "min_samp": 0.01,
                "max_samp": 0.5,
                "sample_fn": "loguniform",
                "explore_wt": 0.3,
                "enforce_limits": True,
            }
        },
        **extra,
    }
    return parse_pbt_block(block)


def toy_trial(config, *, settings: PBTSettings, max_epochs: int, epoch_s: float = 0.0, resume_from=None):
    state = {"x": 10.0, "epoch": -1, "smth": None}
    checkpoint = tune.get_checkpoint()
    resumed = resume_from.location(int(config["worker_id"])) if resume_from is not None else None
    if checkpoint is not None:
        with checkpoint.as_directory() as directory, open(os.path.join(directory, "state.json")) as f:
            state = json.load(f)
    elif resumed is not None:  # --resume: the member's boundary checkpoint (plain JSON here)
        filesystem, directory = resumed
        with filesystem.open_input_stream(f"{directory}/state.json") as f:
            state = json.loads(f.read())
    lr = float(config[LR])
    if lr > 10:
        raise RuntimeError("this member crashes on every start")
    worker = int(config["worker_id"])
    for epoch in range(state["epoch"] + 1, max_epochs):
        time.sleep(epoch_s)
        state["x"] = state["x"] * (1 - lr) if lr <= 1 else math.nan
        state["smth"] = state["x"] if state["smth"] is None else 0.3 * state["smth"] + 0.7 * state["x"]
        state["epoch"] = epoch
        metrics = {
            "cur_epoch": epoch,
            "epoch": epoch,
            "valid/recon_smth": state["smth"],
            "valid/recon": state["x"],
            "lr-AdamW": lr,
            "hp/lr_init": lr,
            "worker_id": worker,
            "generation": settings.generation_of(epoch),
            "pid": os.getpid(),
        }
        done = epoch + 1
        if settings.is_boundary(done) or done >= max_epochs:
            with tempfile.TemporaryDirectory() as directory:
                with open(os.path.join(directory, "state.json"), "w") as f:
                    json.dump(state, f)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)
