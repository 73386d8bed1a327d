"""Which malloc this process runs on, and where tcmalloc is to preload it.

torch's CPU activations are tens of MB each. glibc maps every such block afresh and unmaps it on free,
so each chunk page-faults its activations in again (most of a CPU worker's time went to the kernel).
tcmalloc keeps freed spans and hands them out again: torch's stream ran 1.37x faster at the same peak
RSS (README, "CPU memory allocation"; `bench.engines` measures it side by side). The CPU worker
image preloads it (`LD_PRELOAD`); so do `make demo` and the benchmarks where the library is installed.
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path
from typing import Literal

Malloc = Literal["tcmalloc", "jemalloc", "glibc"]
TCMALLOC_NAME = "libtcmalloc_minimal.so.4"  # Debian/Ubuntu: libtcmalloc-minimal4 (gperftools)
TCMALLOC_PATTERNS = (
    f"/usr/local/lib/{TCMALLOC_NAME}",
    f"/usr/lib/*/{TCMALLOC_NAME}",
    f"/usr/lib/{TCMALLOC_NAME}",
)


def malloc_library() -> Malloc:
    """The malloc this process's global symbol scope resolves to (a preloaded library wins over glibc).

    tcmalloc exports `tc_version` and jemalloc `mallctl`; a library that only some extension module
    loaded privately is not in that scope, so it is not reported.
    """
    process = ctypes.CDLL(None)
    if hasattr(process, "tc_version"):
        return "tcmalloc"
    if hasattr(process, "mallctl"):
        return "jemalloc"
    return "glibc"


def find_tcmalloc() -> Path | None:
    """tcmalloc's shared library if this machine has it (to put in `LD_PRELOAD`), else None."""
    for pattern in TCMALLOC_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[0])
    return None


def malloc_env(malloc: Malloc) -> dict[str, str]:
    """This process's environment for a child on `malloc`: tcmalloc preloaded, or no preload (glibc)."""
    env = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    if malloc == "glibc":
        return env
    library = find_tcmalloc()
    if malloc != "tcmalloc" or library is None:
        raise RuntimeError(
            f"{malloc} cannot be preloaded here (tcmalloc: apt-get install libtcmalloc-minimal4)"
        )
    return env | {"LD_PRELOAD": str(library)}


def allocator_advice(device: str, malloc: Malloc) -> str | None:
    """A warning for a CPU worker that runs on glibc's malloc, else None."""
    if device.split(":")[0] != "cpu" or malloc != "glibc":
        return None
    hint = find_tcmalloc()
    preload = f"LD_PRELOAD={hint}" if hint else f"install libtcmalloc-minimal4 and preload {TCMALLOC_NAME}"
    return (
        "CPU inference on glibc's malloc page-faults every chunk's activations in again (about 1.4x "
        f"slower than on tcmalloc, measured); start it with {preload}"
    )
