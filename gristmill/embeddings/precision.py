"""Which number format the model computes in: bfloat16 where the CPU does it in hardware, float32 elsewhere.

On a CPU with bfloat16 instructions (x86 `avx512_bf16` or AMX, Arm `bf16`) the model under bfloat16
autocast embeds 2.5 times as many chunks per second as in float32 (62 against 25 on 2 EPYC cores),
every vector within cosine 0.99997 of float32's (bench/bench_embedder.py). Without them bfloat16 is
emulated: on the same CPU with oneDNN kept off those instructions (ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI)
it ran at half float32's speed, so there `auto` keeps float32.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gristmill.settings import EmbeddingsPrecision

Precision = Literal["bfloat16", "float32"]

CPUINFO = Path("/proc/cpuinfo")
# x86 names the instructions in its `flags` line, arm64 in its `Features` line.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: Precision
    reason: str  # for the start-up log line


def cpu_flags(cpuinfo: str) -> set[str]:
    """The instruction-set flags of the first processor listed in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def choose_precision(setting: EmbeddingsPrecision, cpuinfo: str | None = None, *, onednn: bool | None = None) -> PrecisionChoice:
    """What `GRISTMILL_EMBEDDINGS_PRECISION` asks for, `auto` decided by the CPU's flags.

    `cpuinfo` defaults to this machine's /proc/cpuinfo (none outside Linux: float32), `onednn` to
    whether this torch build has oneDNN, the library that runs bfloat16 matrix products natively.
    """
    if setting != "auto":
        return PrecisionChoice(setting, "set by GRISTMILL_EMBEDDINGS_PRECISION")
    if cpuinfo is None:
        cpuinfo = CPUINFO.read_text() if CPUINFO.is_file() else ""
    native = sorted(cpu_flags(cpuinfo).intersection(NATIVE_BFLOAT16_FLAGS))
    if not native:
        return PrecisionChoice("float32", "the CPU has no bfloat16 instructions")
    if onednn is None:
        import torch

        onednn = torch.backends.mkldnn.is_available()
    if not onednn:
        return PrecisionChoice("float32", "this torch build has no oneDNN to run bfloat16 with")
    return PrecisionChoice("bfloat16", f"the CPU has {', '.join(native)}")
