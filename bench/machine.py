"""The machine header every benchmark prints above its table: CPU, CPU count, versions.

    python bench/machine.py [--packages TensorFlow Keras LiteRT]

Versions come from the installed distributions' metadata, so printing them imports nothing
heavy. Each bench script calls `print_header(...)` with the packages its figures depend on.
"""

from __future__ import annotations

import argparse
import os
import platform
from importlib import metadata
from pathlib import Path

# Names users know -> distributions that may provide them (the first one installed wins).
DISTRIBUTIONS = {
    "TensorFlow": ("tensorflow", "tensorflow-cpu", "tensorflow_cpu"),
    "Keras": ("keras",),
    "LiteRT": ("ai-edge-litert",),
    "gunicorn": ("gunicorn",),
    "Flask": ("flask",),
    "DVC": ("dvc",),
    "Pillow": ("pillow",),
    "NumPy": ("numpy",),
}


def cpu_model() -> str:
    """/proc/cpuinfo's 'model name' (Linux), else platform.processor(), else 'unknown'."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_counts() -> tuple[int | None, int | None]:
    """(os.cpu_count(), CPUs this process may run on: len(os.sched_getaffinity(0)))."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return os.cpu_count(), usable


def version(name: str) -> str:
    for dist in DISTRIBUTIONS.get(name, (name,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def header(*packages: str) -> str:
    """Lines naming the CPU, its count and the versions of Python and `packages`."""
    total, usable = cpu_counts()
    lines = [
        f"machine: {cpu_model()}; os.cpu_count() {total}, usable (sched_getaffinity) {usable}",
        f"versions: Python {platform.python_version()}"
        + "".join(f", {name} {version(name)}" for name in packages),
    ]
    return "\n".join(lines)


def print_header(*packages: str) -> None:
    print(header(*packages), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", nargs="*", default=["TensorFlow", "Keras", "LiteRT"])
    args = parser.parse_args()
    print_header(*args.packages)


if __name__ == "__main__":
    main()
