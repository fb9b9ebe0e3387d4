"""CPU runtime tuning and device helpers."""

import pytest
import torch

from imgrec import runtime
from imgrec.errors import ImgrecError
from imgrec.train.precision import training_dtype


def test_configure_cpu_runtime_reports_and_is_idempotent():
    first = runtime.configure_cpu_runtime()
    assert first["num_threads"] == torch.get_num_threads() >= 1
    assert set(first["mallopt"]) <= {"M_MMAP_MAX", "M_TRIM_THRESHOLD"}
    first["mallopt"]["M_MMAP_MAX"] = 123  # the returned dict is a copy
    second = runtime.configure_cpu_runtime()
    assert second["mallopt"].get("M_MMAP_MAX") in (None, 0)
    assert second == runtime.configure_cpu_runtime()


def test_device_helpers():
    assert runtime.autocast_dtype(torch.device("cpu")) is None
    assert runtime.autocast_dtype("cpu") is None
    assert runtime.device().type in ("cpu", "cuda")
    if runtime.device().type == "cuda":
        assert runtime.autocast_dtype("cuda") in (torch.bfloat16, torch.float16)


def test_training_dtype_follows_precision_and_refuses_what_the_device_cannot_run():
    assert training_dtype("auto", "cpu", from_scratch=False) is None
    assert training_dtype("32", "cpu", from_scratch=True) is None
    assert training_dtype("bf16", "cpu", from_scratch=False) is torch.bfloat16
    with pytest.raises(ImgrecError, match="--precision 16 needs a GPU"):
        training_dtype("16", "cpu", from_scratch=False)


def test_peak_rss_is_plausible():
    assert 10 < runtime.peak_rss_mb() < 1_000_000


def test_loader_workers_follow_the_device_and_the_processes(monkeypatch):
    from imgrec.train import finetune

    monkeypatch.setattr(finetune, "usable_cpus", lambda: 16)
    assert finetune.default_workers(on_gpu=True) == 15  # the cores only augment
    assert finetune.default_workers(on_gpu=True, processes=4) == 3
    assert finetune.default_workers(on_gpu=False) == 4  # the cores train
    monkeypatch.setattr(finetune, "usable_cpus", lambda: 2)
    assert finetune.default_workers() == 0
    assert finetune.default_workers(on_gpu=True) == 1
