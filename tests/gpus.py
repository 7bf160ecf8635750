"""The one seam where tests pretend a GPU exists: vlmkit.gpu.probe_gpus's result."""

from __future__ import annotations

import pytest

from vlmkit.gpu import GpuDevice, GpuProbe

H100 = GpuDevice(index=0, name="NVIDIA H100 80GB HBM3", total_bytes=85_520_809_984,
                 free_bytes=85_520_809_984 - 503_316_480, used_bytes=503_316_480,
                 compute_capability=(9, 0), reserved_bytes=503_316_480)
T4 = GpuDevice(index=0, name="Tesla T4", total_bytes=15_360 * 2**20, free_bytes=15_000 * 2**20,
               used_bytes=360 * 2**20, compute_capability=(7, 5))


def fake_probe(*devices: GpuDevice) -> GpuProbe:
    return GpuProbe(devices=tuple(devices), driver="580.159.04", cuda_driver="13.0")


@pytest.fixture
def fake_gpu(monkeypatch):
    """Call with GpuDevice objects to make NVML report them; with none, no GPU."""
    def install(*devices: GpuDevice) -> None:
        probe = fake_probe(*devices) if devices else GpuProbe(reason="no NVIDIA driver found (test)")
        monkeypatch.setattr("vlmkit.gpu.probe_gpus", lambda: probe)
    return install
