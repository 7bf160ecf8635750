"""What GPUs this machine has, read through NVML (nvidia-ml-py), never through torch.

`probe_gpus` is the one seam tests replace to pretend a GPU exists on a CPU-only machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuDevice:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    used_bytes: int
    compute_capability: tuple[int, int]
    reserved_bytes: int | None = None  # driver-reserved memory (NVML memory info v2)
    mig: bool = False  # a MIG slice of a physical GPU

    @property
    def bf16(self) -> bool:
        """Native bfloat16 needs Ampere (8.0) or newer; a T4 only emulates it."""
        return self.compute_capability >= (8, 0)


@dataclass(frozen=True)
class GpuProbe:
    devices: tuple[GpuDevice, ...] = ()
    driver: str | None = None
    cuda_driver: str | None = None  # e.g. "13.0"
    reason: str | None = None  # why there is no GPU, when `devices` is empty
    notes: tuple[str, ...] = field(default=())


def parse_device(value: str | int | None) -> str | None:
    """One meaning of --device in every command: cpu, cuda (GPU 0), cuda:N, or N for cuda:N."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text.isdigit():
        return f"cuda:{int(text)}"
    if text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    from vlmkit.errors import UsageError

    raise UsageError(f"Unknown device '{value}'", "Use cpu, cuda, cuda:N, or N for GPU N.")


def device_index(device: str) -> int:
    """The GPU index of a parsed CUDA device: cuda -> 0, cuda:3 -> 3."""
    return int(device.split(":")[1]) if ":" in device else 0


def probe_gpus() -> GpuProbe:
    """Every visible GPU (MIG slices as their own devices), or the reason there is none."""
    try:
        import pynvml
    except ImportError:
        return GpuProbe(reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        return GpuProbe(reason="no NVIDIA driver found (libnvidia-ml is missing): "
                               "this machine has no usable NVIDIA GPU")
    except pynvml.NVMLError as exc:
        return GpuProbe(reason=f"the NVIDIA driver did not answer: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        devices: list[GpuDevice] = []
        notes: list[str] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            slices = _mig_slices(pynvml, handle)
            if slices:
                notes.append(f"GPU {index} is in MIG mode: each slice is listed with its own memory")
            for mig_handle in slices or [handle]:
                devices.append(_device(pynvml, handle, mig_handle, len(devices), bool(slices)))
        reason = None if devices else "the NVIDIA driver reports no GPU"
        return GpuProbe(tuple(devices), driver, f"{cuda // 1000}.{cuda % 1000 // 10}", reason, tuple(notes))
    except pynvml.NVMLError as exc:
        return GpuProbe(reason=f"NVML failed while listing GPUs: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _device(pynvml, parent, handle, index: int, mig: bool) -> GpuDevice:
    try:
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
        reserved = memory.reserved
    except pynvml.NVMLError:
        memory, reserved = pynvml.nvmlDeviceGetMemoryInfo(handle), None
    return GpuDevice(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        total_bytes=memory.total,
        free_bytes=memory.free,
        used_bytes=memory.used,
        compute_capability=tuple(pynvml.nvmlDeviceGetCudaComputeCapability(parent)),
        reserved_bytes=reserved,
        mig=mig,
    )


def _mig_slices(pynvml, handle) -> list:
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:  # not a MIG-capable GPU
        return []
    if current != pynvml.NVML_DEVICE_MIG_ENABLE:
        return []
    slices = []
    for i in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            slices.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i))
        except pynvml.NVMLError:  # an empty slot
            continue
    return slices


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def used_bytes(index: int) -> int | None:
    """Memory NVML shows used on one GPU now (all processes), or None when NVML cannot say."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver, no library: nothing to measure
        return None
    try:
        return pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).used
    except pynvml.NVMLError:
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
