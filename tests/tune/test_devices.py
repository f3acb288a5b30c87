"""Where a trial trains: CUDA for a GPU share when CUDA works, else the CPU with the reason, said once."""

from __future__ import annotations

import logging

import pytest
import torch

from autolfads.tune.devices import DEVICE_NOTE, DeviceNotice, TrialDevice, cuda_problem, trial_device


def test_a_trial_without_a_gpu_share_trains_on_the_cpu_silently() -> None:
    assert trial_device(0) == TrialDevice("cpu")


def test_a_gpu_share_trains_on_cuda_when_it_works_else_on_the_cpu_saying_why() -> None:
    device = trial_device(0.5)
    if torch.cuda.is_available():  # a GPU machine (the device check)
        assert device == TrialDevice("cuda")
        return
    assert device.device == "cpu"
    assert device.note is not None and device.note.startswith("given 0.5 GPU but ")
    assert str(cuda_problem()) in device.note and device.note.endswith("training on the CPU, much slower")


def test_only_an_automatic_accelerator_is_chosen_for_the_user() -> None:
    assert TrialDevice("cuda").trainer_options("auto") == {"accelerator": "gpu", "devices": 1}
    assert TrialDevice("cuda").trainer_options(None) == {"accelerator": "gpu", "devices": 1}
    assert TrialDevice("cpu", "why").trainer_options("auto") == {"accelerator": "cpu"}
    assert TrialDevice("cuda").trainer_options("cpu") == {}  # the config's own choice stands


def test_the_driver_warns_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    notice = DeviceNotice()
    note = "given 0.5 GPU but this torch is a CPU-only build: training on the CPU, much slower"
    with caplog.at_level(logging.WARNING, logger="autolfads.tune"):
        for worker in range(3):
            notice.on_trial_result(
                0, [], "trial", {DEVICE_NOTE: note, "worker_id": worker, "node_id": "ab12"}
            )
        notice.on_trial_result(0, [], "trial", {"worker_id": 3})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "trial 0 on Ray node ab12 was given 0.5 GPU but this torch is a CPU-only build" in warnings[0]
