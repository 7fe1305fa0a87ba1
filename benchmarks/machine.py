"""What the benchmarks print about the machine they ran on."""

import os
import platform
from pathlib import Path

import torch
import transformers


def machine_description(*extra: str) -> str:
    """CPU model, cores, torch threads and library versions, plus `extra` items (e.g. other libraries)."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    cpu = models[0] if models else platform.processor() or "unknown CPU"
    parts = [
        f"{cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads)",
        f"torch {torch.__version__}",
        *extra,
        f"transformers {transformers.__version__}",
        f"Python {platform.python_version()}",
        platform.system(),
    ]
    return ", ".join(parts)
