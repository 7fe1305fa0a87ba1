"""Training and inference throughput of CLAVER-B/16 (8 frames, 224 px) next to plain CLIP ViT-B/16 with mean
pooling, in bf16 on one GPU.

Both models start from random weights and classify 400 classes against cached text features:

* **CLAVER**: `ClaverForVideoClassification` of the B/16 preset (12 CLIP layers + 4 KMT blocks), text tower
  frozen, so its features are computed once and reused by every step (`freeze_text_encoder` in the example
  script); one run per Kronecker mask (`kmta`, `kmcta`) and attention implementation (`sdpa`,
  `flex_attention`).
* **baseline**: transformers' `CLIPVisionModelWithProjection` (ViT-B/16) on every frame, L2-normalised frame
  embeddings averaged over time, logits against a fixed `(400, 512)` text-feature matrix: the mean-pooling
  model of the same backbone, with no temporal modelling.

A training step is forward + cross-entropy + backward + fused AdamW step under `torch.autocast(bfloat16)`
(fp32 master weights, as `Trainer --bf16`); inference is a forward under `torch.inference_mode` and the same
autocast. After `--warmup` untimed steps, `--steps` steps are timed between CUDA synchronisations; reported:
clips per second, milliseconds per step, peak allocated GPU memory, and each model's throughput relative to the
baseline measured in the same run.

    python benchmarks/gpu_throughput.py                        # on a CUDA GPU, about two minutes on an H100
    python benchmarks/gpu_throughput.py --quick --device cpu   # tiny shapes, fp32: a smoke test anywhere
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from machine import machine_description
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from claver_hf import ClaverConfig, ClaverForVideoClassification, preset_config
from claver_hf._compat import from_config

NUM_CLASSES = 400


@dataclass(frozen=True)
class Case:
    label: str
    build: Callable[[], nn.Module]


class MeanPoolingCLIP(nn.Module):
    """CLIP image tower on every frame, L2-normalised frame embeddings averaged over time, scaled cosine
    logits against fixed text features: the order-free baseline."""

    def __init__(self, config: CLIPVisionConfig, projection_dim: int, num_classes: int):
        super().__init__()
        self.vision = from_config(CLIPVisionModelWithProjection, config, attn_implementation="sdpa")
        text_features = nn.functional.normalize(torch.randn(num_classes, projection_dim), dim=-1)
        self.register_buffer("text_features", text_features)
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None):
        """`pixel_values` `(B, T, 3, H, W)` -> logits `(B, C)` (and the loss when `labels` are given)."""
        batch, frames = pixel_values.shape[:2]
        frame_embeds = self.vision(pixel_values=pixel_values.flatten(0, 1)).image_embeds
        video = nn.functional.normalize(frame_embeds, dim=-1).view(batch, frames, -1).mean(1)
        logits = self.logit_scale.exp() * video @ self.text_features.t()
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return loss, logits


def claver_config(args: argparse.Namespace, mask: str) -> ClaverConfig:
    if args.quick:
        return ClaverConfig(
            vision_config={
                "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                "patch_size": 16, "image_size": args.image_size, "num_frames": args.frames,
                "kmt_num_hidden_layers": 1, "kronecker_mask": mask,
            },
            text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
            projection_dim=32,
        )  # fmt: skip
    return preset_config("B/16", num_frames=args.frames, image_size=args.image_size, kronecker_mask=mask)


def build_claver(args: argparse.Namespace, mask: str, attention: str) -> nn.Module:
    config = claver_config(args, mask)
    config.id2label = {i: f"class {i}" for i in range(NUM_CLASSES)}
    model = from_config(ClaverForVideoClassification, config, attn_implementation=attention)
    tokens = torch.randint(1, config.text_config.vocab_size - 1, (1, NUM_CLASSES, 16))
    model.set_text_bank(tokens)
    for parameter in [*model.claver.text_model.parameters(), *model.claver.text_projection.parameters()]:
        parameter.requires_grad = False
    return model


def build_baseline(args: argparse.Namespace) -> nn.Module:
    config = claver_config(args, "kmta")
    vision = config.vision_config
    clip_config = CLIPVisionConfig(
        hidden_size=vision.hidden_size, intermediate_size=vision.intermediate_size,
        num_hidden_layers=vision.num_hidden_layers, num_attention_heads=vision.num_attention_heads,
        patch_size=vision.patch_size, image_size=vision.image_size, projection_dim=config.projection_dim,
    )  # fmt: skip
    return MeanPoolingCLIP(clip_config, config.projection_dim, NUM_CLASSES)


def loss_and_logits(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor | None):
    if isinstance(model, MeanPoolingCLIP):
        return model(pixel_values, labels)
    output = model(pixel_values=pixel_values, labels=labels)
    return output.loss, output.logits


def timed(step: Callable[[], None], warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step, averaged over `steps` after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def train_seconds(model: nn.Module, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds per training step: forward, loss, backward and a fused AdamW step under bf16 autocast."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.fp32)
    videos = torch.randn(
        args.train_batch_size, args.frames, 3, args.image_size, args.image_size, device=device
    )
    labels = torch.randint(0, NUM_CLASSES, (args.train_batch_size,), device=device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, fused=device.type == "cuda")

    def step() -> None:
        with autocast:
            loss, _ = loss_and_logits(model, videos, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    return timed(step, args.warmup, args.steps, device)


def inference_seconds(model: nn.Module, args: argparse.Namespace, device: torch.device) -> float:
    """Seconds per inference forward under `torch.inference_mode` and bf16 autocast."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.fp32)
    videos = torch.randn(
        args.eval_batch_size, args.frames, 3, args.image_size, args.image_size, device=device
    )

    @torch.inference_mode()
    def step() -> None:
        with autocast:
            loss_and_logits(model, videos, None)

    model.eval()
    return timed(step, args.warmup, args.steps, device)


def measure(case: Case, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Training and inference throughput of one model, with its trained parameter count and peak memory."""
    model = case.build().to(device)
    reset_memory(device)
    train = train_seconds(model, args, device)
    train_memory = peak_gib(device)
    reset_memory(device)
    inference = inference_seconds(model, args, device)
    inference_memory = peak_gib(device)
    return {
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "train_clips_per_s": args.train_batch_size / train,
        "train_ms": 1000 * train,
        "train_gib": train_memory,
        "eval_clips_per_s": args.eval_batch_size / inference,
        "eval_ms": 1000 * inference,
        "eval_gib": inference_memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--train-batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--masks", nargs="+", default=["kmta", "kmcta"])
    parser.add_argument("--attention", nargs="+", default=["sdpa", "flex_attention"])
    parser.add_argument("--fp32", action="store_true", help="No bf16 autocast (CPUs without bf16 support).")
    parser.add_argument("--quick", action="store_true", help="Tiny shapes and 2 steps: a smoke test.")
    args = parser.parse_args()
    if args.quick:
        args.image_size, args.train_batch_size, args.eval_batch_size, args.warmup, args.steps = 32, 2, 2, 1, 2
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("No CUDA device: run with --device cpu (and --quick) elsewhere.")
        accelerator = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    else:
        accelerator = "CPU"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    cases = [Case("CLIP ViT-B/16 mean pooling (sdpa)", lambda: build_baseline(args))]
    cases += [
        Case(f"CLAVER-B/16 {mask} ({attention})", lambda m=mask, a=attention: build_claver(args, m, a))
        for attention in args.attention
        for mask in args.masks
    ]
    print(machine_description(accelerator))
    precision = "fp32" if args.fp32 else "bf16 autocast"
    print(
        f"{args.frames} frames x {args.image_size} px, {precision}, train batch {args.train_batch_size}, "
        f"inference batch {args.eval_batch_size}, {NUM_CLASSES} classes with cached text features\n"
    )
    print(
        "| model | trained params (M) | train clips/s | vs baseline | train ms/step | train peak GiB "
        "| inference clips/s | vs baseline | inference peak GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    baseline = None
    for case in cases:
        try:
            result = measure(case, args, device)
        except Exception as error:  # one failing kernel must not hide the other rows
            print(f"| {case.label} | failed: {type(error).__name__}: {str(error).splitlines()[0][:150]} |")
            continue
        finally:
            reset_memory(device)
        baseline = baseline or result
        print(
            f"| {case.label} | {result['parameters'] / 1e6:.1f} | {result['train_clips_per_s']:.1f} | "
            f"{result['train_clips_per_s'] / baseline['train_clips_per_s']:.2f}x | {result['train_ms']:.1f} | "
            f"{result['train_gib']:.1f} | {result['eval_clips_per_s']:.1f} | "
            f"{result['eval_clips_per_s'] / baseline['eval_clips_per_s']:.2f}x | {result['eval_gib']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
