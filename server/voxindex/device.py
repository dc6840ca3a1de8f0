"""What the engine runs on, as /readyz and /metrics report it: the device and, on a GPU, how
full and how busy it is (NVML through ``nvidia-ml-py``; without it, PyTorch's view of memory
and no utilisation)."""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("voxindex")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class DeviceProbe:
    """Reads the serving device's facts; cheap enough to call at every scrape."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.index = (
            (device.index if device.index is not None else torch.cuda.current_device())
            if (device.type == "cuda")
            else 0
        )
        self.name = torch.cuda.get_device_name(self.index) if device.type == "cuda" else cpu_name()
        self._nvml: Any = None
        self._handle: Any = None
        self.nvml_missing: str | None = None  # why utilisation is unknown, on a GPU
        if device.type == "cuda":
            self._open_nvml()

    def _open_nvml(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            props = torch.cuda.get_device_properties(self.index)
            pci: list[Any] = [getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device")]
            if None in pci:  # an older torch: CUDA's order is NVML's unless CUDA_VISIBLE_DEVICES says else
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            else:  # the same GPU whatever CUDA_VISIBLE_DEVICES says
                self._handle = pynvml.nvmlDeviceGetHandleByPciBusId("{:08X}:{:02X}:{:02X}.0".format(*pci))
            self._nvml = pynvml
        except Exception as e:  # no nvidia-ml-py, no driver library, or a device NVML cannot see
            self.nvml_missing = f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
            log.warning("GPU utilisation unknown (NVML unavailable: %s)", self.nvml_missing)

    def memory(self) -> tuple[int, int]:
        """(used, total) bytes of the GPU, every process counted."""
        if self._nvml is not None:
            info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            return int(info.used), int(info.total)
        free, total = torch.cuda.mem_get_info(self.index)
        return total - free, total

    def utilization(self) -> float | None:
        """Share of the last sample period the GPU was running kernels (0–1), if NVML answers."""
        if self._nvml is None:
            return None
        return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu) / 100.0

    def facts(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.device.type, "name": self.name}
        if self.device.type == "cuda":
            used, total = self.memory()
            out.update(index=self.index, memory_used_bytes=used, memory_total_bytes=total)
            out["utilization"] = self.utilization()
        return out
