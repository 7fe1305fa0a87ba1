"""Benchmark one KMT block at ViT-B/16 shapes: Kronecker mask attention against a dense float mask.

Tokens are `T` frames of `L = 197` tokens laid out frame-major (width 768, 12 heads, MLP 3072), fp32 on
CPU under `torch.inference_mode`, for `T = 8` and `T = 32`. Compared:

* **ours**: `KroneckerEncoderLayer` / `KroneckerMaskAttention` with `_attn_implementation = "sdpa"`, masks
  `kmta` and `kmcta` (cached chunked masks; KMCTA runs one SDPA call per frame against the keys of that
  frame and the earlier ones);
* **reference** (the X-CLIP / CLAVER research code's approach): a pre-LN block of
  `torch.nn.MultiheadAttention(batch_first=True)`, LayerNorms and a QuickGELU MLP, fed a dense additive
  float `(T·L, T·L)` mask (`-inf` where blocked) rebuilt with `torch.kron` in every forward;
* **floor**: the same `KroneckerEncoderLayer` machinery with mask `joint`, i.e. one unmasked SDPA call.

The attention alone (where the masks act) and the full block (attention + MLP) are timed separately.
Before timing, the reference block is checked to compute the same output as ours with shared weights.

Each case runs in a fresh process (a `forkserver` child that has imported torch and transformers but run
nothing), which builds the module and its input, warms up and then times `--repeats` forwards. Reported:
the median time, its ratio to the unmasked SDPA floor, and the peak resident memory (RSS) above the RSS
right after building the module and input: the peak counter (`VmHWM`) is reset there through
`/proc/self/clear_refs` and read after the last forward, so it covers mask building and caching, the
attention buffers and the activations (Linux only).

Run from the repository root:

    python benchmarks/bench_attention.py            # defaults: T = 8 and 32, 5 repeats, a few minutes
    python benchmarks/bench_attention.py --quick    # tiny shapes and 1 repeat: a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from machine import machine_description
from torch import nn
from transformers import CLIPVisionConfig

from claver_hf._compat import set_attn_implementation
from claver_hf.modeling.kronecker import KroneckerEncoderLayer, KroneckerMaskAttention

Part = Literal["attention", "block"]
PARTS: tuple[Part, ...] = ("attention", "block")


@dataclass(frozen=True)
class Variant:
    """One implementation of the layer under one mask."""

    label: str
    implementation: Literal["ours", "reference"]
    mask_type: str


FLOOR = Variant("unmasked SDPA (floor)", "ours", "joint")
VARIANTS: tuple[Variant, ...] = (
    FLOOR,
    Variant("ours KMTA", "ours", "kmta"),
    Variant("ours KMCTA", "ours", "kmcta"),
    Variant("reference KMTA (MHA + float mask)", "reference", "kmta"),
    Variant("reference KMCTA (MHA + float mask)", "reference", "kmcta"),
)


@dataclass(frozen=True)
class Shape:
    """Sizes of the benchmarked block (everything but the number of frames)."""

    tokens_per_frame: int
    width: int
    heads: int
    intermediate: int
    batch_size: int


@dataclass(frozen=True)
class Case:
    """One benchmarked configuration: which part of the block, which variant, how many frames."""

    part: Part
    variant: Variant
    num_frames: int


class Measurement(NamedTuple):
    """Median forward time in seconds and peak RSS increase in MiB."""

    median_s: float
    peak_mib: float


def reference_float_mask(
    mask_type: str, num_frames: int, tokens_per_frame: int, dtype: torch.dtype
) -> torch.Tensor:
    """Dense additive `(T·L, T·L)` mask, `-inf` where blocked, built from Kronecker products."""
    ones_l = torch.ones(tokens_per_frame, tokens_per_frame)
    blocked = torch.kron(torch.eye(num_frames), ones_l - torch.eye(tokens_per_frame))  # I_T ⊗ (J_L − I_L)
    if mask_type == "kmcta":
        blocked = blocked + torch.kron(torch.ones(num_frames, num_frames).triu(1), ones_l)  # + U_T ⊗ J_L
    size = num_frames * tokens_per_frame
    return torch.zeros(size, size, dtype=dtype).masked_fill_(blocked.bool(), float("-inf"))


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ReferenceAttention(nn.Module):
    """`nn.MultiheadAttention` with a dense float Kronecker mask rebuilt in every forward."""

    def __init__(self, width: int, heads: int, mask_type: str):
        super().__init__()
        self.mask_type = mask_type
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        mask = reference_float_mask(self.mask_type, num_frames, x.shape[1] // num_frames, x.dtype)
        # need_weights=False, as the reference calls it. A float mask keeps nn.MultiheadAttention off its
        # fused fast path (`_native_multi_head_attention`); its regular path then passes the dense float
        # mask to scaled_dot_product_attention and returns no attention weights.
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]


class ReferenceBlock(nn.Module):
    """Pre-LN block: `x + Attn(LN1(x), mask)`, then `x + MLP(LN2(x))` with a QuickGELU MLP."""

    def __init__(self, width: int, heads: int, intermediate: int, mask_type: str):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = ReferenceAttention(width, heads, mask_type)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, intermediate), QuickGELU(), nn.Linear(intermediate, width))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), num_frames)
        return x + self.mlp(self.ln_2(x))


def clip_config(shape: Shape) -> CLIPVisionConfig:
    config = CLIPVisionConfig(
        hidden_size=shape.width, intermediate_size=shape.intermediate, num_attention_heads=shape.heads
    )
    set_attn_implementation(config, "sdpa")
    return config


def build_module(part: Part, variant: Variant, shape: Shape) -> nn.Module:
    if variant.implementation == "ours":
        layer = KroneckerMaskAttention if part == "attention" else KroneckerEncoderLayer
        return layer(clip_config(shape), variant.mask_type).eval()
    if part == "attention":
        return ReferenceAttention(shape.width, shape.heads, variant.mask_type).eval()
    return ReferenceBlock(shape.width, shape.heads, shape.intermediate, variant.mask_type).eval()


def load_reference_weights(reference: ReferenceBlock, ours: KroneckerEncoderLayer) -> None:
    """Copy the weights of `ours` into `reference` (strict: every parameter is mapped)."""
    state = ours.state_dict()

    def in_proj(kind: str) -> torch.Tensor:
        return torch.cat([state[f"self_attn.{name}.{kind}"] for name in ("q_proj", "k_proj", "v_proj")])

    reference.load_state_dict(
        {
            "ln_1.weight": state["layer_norm1.weight"],
            "ln_1.bias": state["layer_norm1.bias"],
            "attn.attn.in_proj_weight": in_proj("weight"),
            "attn.attn.in_proj_bias": in_proj("bias"),
            "attn.attn.out_proj.weight": state["self_attn.out_proj.weight"],
            "attn.attn.out_proj.bias": state["self_attn.out_proj.bias"],
            "ln_2.weight": state["layer_norm2.weight"],
            "ln_2.bias": state["layer_norm2.bias"],
            "mlp.0.weight": state["mlp.fc1.weight"],
            "mlp.0.bias": state["mlp.fc1.bias"],
            "mlp.2.weight": state["mlp.fc2.weight"],
            "mlp.2.bias": state["mlp.fc2.bias"],
        }
    )


def check_reference_matches_ours(num_frames: int = 3, tokens_per_frame: int = 5) -> float:
    """Largest output difference between the reference block and ours (shared weights, tiny shape)."""
    shape = Shape(tokens_per_frame, width=32, heads=4, intermediate=64, batch_size=2)
    torch.manual_seed(0)
    x = torch.randn(shape.batch_size, num_frames * tokens_per_frame, shape.width)
    worst = 0.0
    with torch.inference_mode():
        for mask_type in ("kmta", "kmcta"):
            ours = KroneckerEncoderLayer(clip_config(shape), mask_type).eval()
            reference = ReferenceBlock(shape.width, shape.heads, shape.intermediate, mask_type).eval()
            load_reference_weights(reference, ours)
            difference = (ours(x, num_frames=num_frames) - reference(x, num_frames)).abs().max().item()
            worst = max(worst, difference)
    if worst > 1e-4:
        raise AssertionError(f"The reference block differs from ours by {worst:.2e}.")
    return worst


def _status_kib(field: str) -> int:
    """A `/proc/self/status` memory field (`VmRSS`, `VmHWM`) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} field.")


def run_case(case: Case, shape: Shape, warmup: int, repeats: int) -> Measurement:
    """Build, warm up and time one case in the current process; meant to run in a fresh child."""
    torch.manual_seed(0)
    module = build_module(case.part, case.variant, shape)
    x = torch.randn(shape.batch_size, case.num_frames * shape.tokens_per_frame, shape.width)
    baseline_kib = _status_kib("VmRSS")
    # Reset the peak RSS to the current RSS (Linux >= 4.0). Where that is refused, VmHWM keeps the peak of
    # the short-lived child so far, which is about the baseline: the child has only built the module.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x, num_frames=case.num_frames)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x, num_frames=case.num_frames)
            times.append(time.perf_counter() - start)
    peak_kib = _status_kib("VmHWM")
    return Measurement(statistics.median(times), (peak_kib - baseline_kib) / 1024)


def run_in_fresh_process(
    context: BaseContext, case: Case, shape: Shape, warmup: int, repeats: int
) -> Measurement:
    with context.Pool(processes=1) as pool:
        return pool.apply(run_case, (case, shape, warmup, repeats))


def markdown_table(results: dict[Case, Measurement], part: Part, frames: Sequence[int], shape: Shape) -> str:
    lines = [
        "| T | tokens | variant | median (ms) | × floor | peak RSS Δ (MiB) |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for num_frames in frames:
        floor = results[Case(part, FLOOR, num_frames)].median_s
        for variant in VARIANTS:
            result = results[Case(part, variant, num_frames)]
            lines.append(
                f"| {num_frames} | {num_frames * shape.tokens_per_frame} | {variant.label} "
                f"| {result.median_s * 1e3:.1f} | {result.median_s / floor:.2f}× | {result.peak_mib:.0f} |"
            )
    return "\n".join(lines)


def target_lines(results: dict[Case, Measurement], frames: Sequence[int]) -> list[str]:
    """The issue's targets, each with its measured value and whether it is met."""

    def find(implementation: str, mask_type: str) -> Variant:
        return next(v for v in VARIANTS if (v.implementation, v.mask_type) == (implementation, mask_type))

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    ours_kmta, ours_kmcta, reference_kmta = (
        find("ours", "kmta"),
        find("ours", "kmcta"),
        find("reference", "kmta"),
    )
    lines = []
    for part in PARTS:
        for num_frames in frames:
            floor = results[Case(part, FLOOR, num_frames)].median_s
            kmta = results[Case(part, ours_kmta, num_frames)].median_s / floor
            kmcta = results[Case(part, ours_kmcta, num_frames)].median_s / floor
            lines.append(
                f"- {part}, T={num_frames}: KMTA {kmta:.3f}× floor (target ≤ 1.10×: {verdict(kmta <= 1.1)}); "
                f"KMCTA {kmcta:.3f}× floor (target < 1×: {verdict(kmcta < 1)})"
            )
    most = max(frames)
    for part in PARTS:
        ours = results[Case(part, ours_kmta, most)].peak_mib
        reference = results[Case(part, reference_kmta, most)].peak_mib
        ratio = ours / reference
        lines.append(
            f"- {part}, T={most}: peak RSS Δ of ours KMTA {ours:.0f} MiB vs reference KMTA {reference:.0f} MiB "
            f"= {ratio:.2f}× (target 'well below', read as ≤ 0.5×: {verdict(ratio <= 0.5)})"
        )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--frames", type=int, nargs="+", help="numbers of frames T (default: 8 32)")
    parser.add_argument("--tokens", type=int, help="tokens per frame L (default: 197, ViT-B/16 at 224 px)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, help="timed forwards per case (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards per case first")
    parser.add_argument(
        "--quick", action="store_true", help="tiny shapes (T = 2 and 4, L = 10, width 64) and 1 repeat"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.quick:
        frames, tokens, repeats = args.frames or [2, 4], args.tokens or 10, args.repeats or 1
        shape = Shape(tokens, width=64, heads=4, intermediate=256, batch_size=args.batch_size)
    else:
        frames, tokens, repeats = args.frames or [8, 32], args.tokens or 197, args.repeats or 5
        shape = Shape(tokens, width=768, heads=12, intermediate=3072, batch_size=args.batch_size)

    print("# KMT block benchmark: Kronecker mask attention vs unmasked SDPA vs dense float mask\n")
    print(f"Machine: {machine_description()}; load average at start {os.getloadavg()[0]:.2f}")
    print(
        f"Shapes: T in {frames}, L = {shape.tokens_per_frame}, width {shape.width}, {shape.heads} heads, "
        f"MLP {shape.intermediate}, batch {shape.batch_size}, fp32, CPU, torch.inference_mode."
    )
    print(
        f"Timing: median of {repeats} forwards after {args.warmup} warm-up forward(s); × floor = time / "
        "time of the unmasked SDPA call (KroneckerEncoderLayer machinery, mask 'joint')."
    )
    print(
        "Memory: peak RSS Δ = peak resident memory above the RSS right after building the module and input, "
        "in a fresh process per case (VmHWM reset through /proc/self/clear_refs, read after the last "
        "forward); it includes mask building and caching, attention buffers and activations."
    )
    print(
        "Reference: nn.MultiheadAttention(batch_first=True, need_weights=False) + LayerNorms + QuickGELU "
        "MLP, dense additive float mask built with torch.kron in every forward (no fused MHA fast path "
        "with a float mask; the regular path calls SDPA with the mask)."
    )
    difference = check_reference_matches_ours()
    print(f"Check: the reference block matches ours with shared weights (max |Δ| = {difference:.1e}).\n")

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "claver_hf.modeling.kronecker"])
    results: dict[Case, Measurement] = {}
    for num_frames in frames:
        for part in PARTS:
            for variant in VARIANTS:
                case = Case(part, variant, num_frames)
                results[case] = run_in_fresh_process(context, case, shape, args.warmup, repeats)
                print(
                    f"T={num_frames:>3} {part:<9} {variant.label:<36} "
                    f"{results[case].median_s * 1e3:>10.1f} ms {results[case].peak_mib:>8.0f} MiB",
                    flush=True,
                )

    for part, title in (("attention", "Attention only"), ("block", "Full block (attention + MLP)")):
        print(f"\n### {title}\n")
        print(markdown_table(results, part, frames, shape))
    print(f"\nMachine: {machine_description()}; load average at end {os.getloadavg()[0]:.2f}")
    print("\nTargets:")
    print("\n".join(target_lines(results, frames)))


if __name__ == "__main__":
    main()
