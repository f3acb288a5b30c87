"""Checkpoints are data (docs/security.md, "checkpoint"): a crafted one is refused and runs nothing; ours
load weights-only, with no global beyond the explicit allow-list.

Every load path is tried: ``load_checkpoint`` (what ``autolfads infer`` reads),
``LFADS.load_from_checkpoint``, ``autolfads infer`` itself, ``fit_model(..., ckpt_path=…)``, a PBT
member's restart (``tune.trainable.fit_member``, with the checkpoint Ray or ``run --resume`` hands it) and
``autolfads train --resume`` (``fit_and_write`` finding a crafted ``last.ckpt`` in OUT). A payload that
would leave a marker file proves that nothing ran.
"""

from __future__ import annotations

import builtins
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from autolfads.config import load_config
from autolfads.errors import AutoLFADSError, CheckpointError, ConfigError
from autolfads.model import LFADS
from autolfads.model.checkpoint import CHECKPOINT_GLOBALS, load_checkpoint
from autolfads.train import (
    CHECKPOINT_SUBDIR,
    WORK_DIR,
    build_datamodule,
    build_model,
    build_trainer,
    fit_and_write,
    fit_model,
    infer_model,
    train_model,
)
from autolfads.tune.trainable import fit_member
from tests.tune.tiny import tiny_config, tiny_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(data, our model.ckpt, the config file): a 2-epoch run with the learning-rate scheduler on, so the
    checkpoint carries optimizer, scheduler, loop and callback states as well as the weights."""
    base = tmp_path_factory.mktemp("ckpt")
    data = tiny_data(base / "data.h5")
    config = tiny_config(base / "cfg.yaml", max_epochs=2)
    cfg = load_config(config, overrides=["model.lr_scheduler=true"], data_paths=[data])
    result = train_model(cfg, base / "out", progress=False)
    return data, result.checkpoint, config


class Payload:
    """Pickles as a call of ``function(*args)``: what a crafted checkpoint carries."""

    def __init__(self, function: object, *args: object) -> None:
        self.call = (function, args)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call


def payloads(marker: Path) -> dict[str, Payload]:
    code = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "Path.write_text": Payload(Path.write_text, marker, "ran"),
        "os.system": Payload(os.system, f"touch {marker}"),
        "builtins.exec": Payload(builtins.exec, code),
        "builtins.eval": Payload(builtins.eval, f"__import__('builtins').exec({code!r})"),
        "subprocess.call": Payload(subprocess.call, ["touch", str(marker)]),
        "shutil.copyfile": Payload(shutil.copyfile, __file__, str(marker)),
    }


def crafted(ours: Path, where: Path, payload: Payload) -> Path:
    """Our own checkpoint with the payload added: everything else about it is genuine."""
    checkpoint = torch.load(ours, weights_only=True)
    checkpoint["hyper_parameters"]["notes"] = payload
    path = where / "crafted.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("name", list(payloads(Path("x"))))
def test_a_crafted_checkpoint_is_refused_on_every_load_path_and_runs_nothing(
    trained: tuple[Path, Path, Path], tmp_path: Path, name: str
) -> None:
    data, ours, config = trained
    marker = tmp_path / "marker"
    path = crafted(ours, tmp_path, payloads(marker)[name])
    with pytest.raises(CheckpointError, match=r"crafted.ckpt: refused to load: it asks for more than plain"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused to load"):
        LFADS.load_from_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused to load"):
        infer_model(path, data, tmp_path / "inferred")
    cfg = load_config(config, data_paths=[data])
    trainer = build_trainer(cfg, tmp_path / "fit", loggers=[], progress=False, checkpoint=False)
    with pytest.raises(CheckpointError, match="refused to load"):
        fit_model(trainer, build_model(cfg), build_datamodule(cfg), ckpt_path=path)
    with pytest.raises(CheckpointError, match="refused to load"):
        fit_member(cfg, 0, tmp_path / "member", str(path), [])  # a trial's restart or resume
    out = tmp_path / "train-out"  # autolfads train --resume: Lightning's last.ckpt in OUT is data too
    (out / WORK_DIR / CHECKPOINT_SUBDIR).mkdir(parents=True)
    shutil.copy(path, out / WORK_DIR / CHECKPOINT_SUBDIR / "last.ckpt")
    with pytest.raises(CheckpointError, match="refused to load"):
        fit_and_write(cfg, out, resume=True, progress=False)
    assert not marker.exists()
    pickle.loads(pickle.dumps(payloads(marker)[name]))  # the payload is live: unpickled, it runs
    assert marker.exists()


def test_a_weights_only_checkpoint_naming_a_gadget_target_is_refused(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Plain data can still name a target in the model's hyper_parameters: the config allow-list stops it."""
    data, ours, _ = trained
    checkpoint = torch.load(ours, weights_only=True)
    checkpoint["hyper_parameters"]["readout"] = [{"_target_": "torch.hub.load", "repo_or_dir": "evil/repo"}]
    path = tmp_path / "gadget.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(
        ConfigError, match=r"model\.readout\.0\._target_: 'torch\.hub\.load' is not an allowed"
    ):
        LFADS.load_from_checkpoint(path)
    with pytest.raises(AutoLFADSError, match=r"'torch\.hub\.load' is not an allowed target"):
        infer_model(path, data, tmp_path / "inferred")


def test_weights_only_false_is_not_offered(trained: tuple[Path, Path, Path]) -> None:
    with pytest.raises(CheckpointError, match="only loaded weights-only"):
        LFADS.load_from_checkpoint(trained[1], weights_only=False)


def test_the_environment_cannot_switch_weights_only_off(
    trained: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "marker"
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(crafted(trained[1], tmp_path, payloads(marker)["os.system"]))
    assert not marker.exists()


def test_our_checkpoints_need_no_global_beyond_the_allow_list(trained: tuple[Path, Path, Path]) -> None:
    _, ours, _ = trained
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in CHECKPOINT_GLOBALS}
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(str(ours))) <= allowed
    checkpoint = load_checkpoint(ours)
    assert {"state_dict", "optimizer_states", "lr_schedulers", "hyper_parameters"} <= set(checkpoint)
    assert isinstance(LFADS.load_from_checkpoint(ours), LFADS)  # the path alone rebuilds the model


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.ckpt is not a model checkpoint"):
        load_checkpoint(junk)
    torch.save([1, 2, 3], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="not a model checkpoint \\(it holds a list\\)"):
        load_checkpoint(tmp_path / "list.ckpt")
