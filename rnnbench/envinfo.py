"""What the numbers were measured on. Every field is best effort: this module never raises."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import rnnbench


def _try(fn, default=None):
    try:
        return fn()
    except Exception:
        return default


def cpu_model() -> str:
    def read():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
        return platform.processor()
    return _try(read, "") or platform.machine()


def gpus() -> list[dict] | str:
    """GPUs through NVML; a string saying why when there are none."""
    try:
        import pynvml
    except Exception:
        return "nvidia-ml-py (pynvml) not installed"
    try:
        pynvml.nvmlInit()
    except Exception as e:
        return f"no NVIDIA GPU visible to NVML ({type(e).__name__})"
    try:
        out = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            out.append({
                "index": i, "name": _decode(pynvml.nvmlDeviceGetName(h)), "driver": _decode(driver),
                "memory_total_bytes": int(mem.total),
                "sm_clock_mhz": _try(lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
                "temperature_c": _try(lambda: pynvml.nvmlDeviceGetTemperature(h, 0)),
                "utilization_pct": _try(lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
            })
        return out
    finally:
        _try(pynvml.nvmlShutdown)


def _decode(s):
    return s.decode() if isinstance(s, bytes) else s


def triton_version() -> str | None:
    # read the metadata instead of importing: importing triton fixes TRITON_INTERPRET for the process
    from importlib import metadata
    return _try(lambda: metadata.version("triton"))


def git_info() -> dict:
    root = Path(rnnbench.__file__).resolve().parent.parent

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip()
    commit = _try(lambda: git("rev-parse", "HEAD"), "")
    dirty = _try(lambda: bool(git("status", "--porcelain", "--untracked-files=no")), None)
    # where the measured code was imported from: `rnnbench ab` checks each side ran its own
    return {"commit": commit or None, "dirty": dirty if commit else None, "source": str(root)}


def system_info() -> dict:
    """The operating system, C library and compiler, from torch.utils.collect_env's helpers: the
    cheap ones only (about 0.15 s together). Its get_env_info() also lists pip and conda packages
    and runs lscpu, several seconds per result file, so it is not called."""
    try:
        from torch.utils import collect_env as ce
    except Exception:
        return {}
    return {"os": _try(lambda: ce.get_os(ce.run)),
            "libc": _try(ce.get_libc_version),
            "compiler": _try(lambda: ce.get_gcc_version(ce.run) or ce.get_clang_version(ce.run))}


def collect(device: str = "cpu") -> dict:
    import torch

    env = {
        "rnnbench": rnnbench.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "triton": triton_version(),
        "cuda": torch.version.cuda,
        "cudnn": _try(lambda: torch.backends.cudnn.version()) if torch.cuda.is_available() else None,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": device,
        "device_name": cpu_model(),
        "gpus": gpus(),
        **system_info(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["device_name"] = _try(lambda: torch.cuda.get_device_name(device), "cuda")
        env["cuda_capability"] = _try(lambda: ".".join(map(str, torch.cuda.get_device_capability())))
    return env


def provenance(argv: list[str] | None = None) -> dict:
    return {**git_info(), "argv": list(sys.argv if argv is None else argv),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
