"""Names shared by the model, PBT, MLflow, fitlog and plots.

The strings match the reference pipeline (lfads-spec §8.2, §6.1) so that a user of lfads-torch finds the same
columns in ``fitlog.csv`` and the same metrics in MLflow. Everything that reads or writes a metric imports
it from here rather than spelling it out.
"""

SPLITS = ("train", "valid")

# The PBT objective: exponentially smoothed validation reconstruction cost (lower is better).
PBT_METRIC = "valid/recon_smth"

HP_METRIC = "hp_metric"
CUR_EPOCH = "cur_epoch"
LR_METRIC = "lr-AdamW"
WORKER_ID = "worker_id"
GENERATION = "generation"

HP_PREFIX = "hp/"


def split_metric(split: str, name: str) -> str:
    """``split_metric("valid", "recon") == "valid/recon"``."""
    return f"{split}/{name}"


def session_metric(split: str, name: str, session: int) -> str:
    """``session_metric("train", "recon", 0) == "train/recon/sess0"``."""
    return f"{split}/{name}/sess{session}"


# Per-split metric suffixes logged every epoch (lfads-spec §8.2).
SPLIT_METRICS = (
    "loss",
    "recon",
    "bps",
    "co_bps",
    "fp_bps",
    "r2",
    "wt_l2",
    "wt_l2/ramp",
    "wt_kl",
    "wt_kl/ic",
    "wt_kl/co",
    "wt_kl/ramp",
)

# Hyperparameters logged as ``hp/<name>`` so that PBT perturbations show as curves (lfads-spec §2.12).
LOGGED_HPS = (
    "lr_init",
    "dropout_rate",
    "cd_rate",
    "kl_ic_scale",
    "kl_co_scale",
    "l2_gen_scale",
    "l2_con_scale",
    "l2_ic_enc_scale",
    "l2_ci_enc_scale",
    "weight_decay",
)
