"""Why the demo's training sat at chance or overfitted, and what each fix does: the demo's model on synthetic clips
held in memory, trained with a plain loop under several variants, all on the same clips and seed.

Variants (``--variants``, default all):

- ``demo recipe``: the demo's model and recipe (patch embedding at 0.1, text warm start, label symmetries: clips
  mirrored, transposed and reversed with the classes they then show);
- ``no label symmetries``: the demo recipe on the plain clips only, as before that fix;
- ``no text warm start``: the text tower starts at random, as before the fix;
- ``CLIP patch scale``: the patch embedding at CLIP's 0.02, as before the fix;
- ``neither fix``;
- ``class vectors, CLIP patch scale`` / ``class vectors``: the text tower replaced by one learnable vector per
  class (cosine logits, the same loss), isolating the video tower: does it learn at all?
- ``mean pooling``: the order-blind control (no KMT blocks, no temporal embedding), with both fixes;
- ``frame-stack CNN``: not CLAVER: four convolutions over the frames stacked as channels, a check that the clips
  can be learnt at this size and number of frames.

Every variant but ``no label symmetries`` trains with the label symmetries. It prints, before training and after
every epoch, the mean cosine between the embeddings of 40 validation videos and between the classes' mean text
embeddings (or class vectors); after every epoch also the mean training loss (ln 10 = 2.30 at chance) and top-1 on
20 training clips per class (unaugmented: how well the model fits what it saw), on validation and on held-out
clips; and at the end the held-out accuracy of each time-reversed pair (a video counts when it gets its own class)
and the share of right directions within each pair (0.5: chance).

Differences from the demo (`claver-hf demo`): clips are rendered at 64x64 and averaged down to the frame size (no
H.264 round trip, no random crops), training takes one frame at random from each of `--frames` equal segments of the
16 rendered frames, evaluation the middle one; AdamW (weight decay 0.01, text tower at a tenth of the learning
rate), linear warm-up over 5 % of the steps then cosine decay to 0; the generator's seed is fixed (99).

    python benchmarks/demo_saddle.py [--epochs 12] [--per-class 200] [--frames 4] [--size 32] [--variants ...]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import machine_description
from torch import nn
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from claver_hf import demo
from claver_hf.data.symmetries import LabelSymmetryAugmentation
from claver_hf.data.synthetic import (
    SYNTHETIC_CLASSES,
    render_clip,
    synthetic_label_symmetries,
    write_synthetic_dataset,
)
from claver_hf.training.run import prepare_run
from claver_hf.training.text_warm_start import mean_class_cosine, warm_start_text_tower

RENDERED_FRAMES, RENDERED_SIZE = 16, 64
CLIP_PATCH_SCALE = 0.02
VARIANTS = {
    "demo recipe": {},
    "no label symmetries": {"symmetries": False},
    "no text warm start": {"warm_start": False},
    "CLIP patch scale": {"patch_scale": CLIP_PATCH_SCALE},
    "neither fix": {"warm_start": False, "patch_scale": CLIP_PATCH_SCALE},
    "class vectors, CLIP patch scale": {"class_vectors": True, "patch_scale": CLIP_PATCH_SCALE},
    "class vectors": {"class_vectors": True},
    "mean pooling": {"mean_pooling": True},
    "frame-stack CNN": {"cnn": True},
}
NUM_CLASSES = len(SYNTHETIC_CLASSES)


def _render(job: tuple[str, tuple[int, ...], bool]) -> np.ndarray:
    name, seed, heldout = job
    return render_clip(name, np.random.default_rng(seed), RENDERED_FRAMES, RENDERED_SIZE, heldout=heldout)


def render_split(
    per_class: int, split_id: int, size: int, heldout: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, 16, 3, size, size)` normalised half-precision frames and `(N,)` labels, class-major."""
    jobs = [
        (name, (99, split_id, label, index), heldout)
        for label, name in enumerate(SYNTHETIC_CLASSES)
        for index in range(per_class)
    ]
    # Spawned workers: forked ones can hang on locks torch's threads held in the parent.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        clips = np.stack(list(pool.map(_render, jobs, chunksize=16)))
    pixels = torch.from_numpy(clips).permute(0, 1, 4, 2, 3).float() / 255
    if size != RENDERED_SIZE:
        frames = F.interpolate(pixels.flatten(0, 1), size=(size, size), mode="area")
        pixels = frames.view(*pixels.shape[:3], size, size)
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 1, 3, 1, 1)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    return ((pixels - mean) / std).half(), labels


def sample_frames(pixels: torch.Tensor, num_frames: int, training: bool) -> torch.Tensor:
    """One frame from each of `num_frames` equal segments: at random (training) or the middle one."""
    segment = RENDERED_FRAMES // num_frames
    batch = pixels.shape[0]
    offsets = (
        torch.randint(0, segment, (batch, num_frames))
        if training
        else torch.full((batch, num_frames), segment // 2)
    )
    index = torch.arange(num_frames) * segment + offsets
    return pixels[torch.arange(batch)[:, None], index].float()


def pair_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    predictions = logits.argmax(-1)
    own, directions = [], []
    for first in range(0, NUM_CLASSES, 2):
        in_class = (labels == first) | (labels == first + 1)
        own.append(float((predictions[in_class] == labels[in_class]).float().mean()))
        in_pair = in_class & ((predictions == first) | (predictions == first + 1))
        directions.append(
            float((predictions[in_pair] == labels[in_pair]).float().mean()) if in_pair.any() else 0.5
        )
    return {
        "top1": float((predictions == labels).float().mean()),
        "pair_own": own,
        "pair_direction": directions,
    }


class FrameStackCNN(nn.Module):
    """The control that is not CLAVER: the frames' channels stacked, four convolutions, a linear classifier."""

    def __init__(self, num_frames: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3 * num_frames, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 3, padding=1, stride=2), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1, stride=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, NUM_CLASSES),
        )  # fmt: skip

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.layers(pixel_values.flatten(1, 2))


def mean_cosine(features: torch.Tensor) -> float:
    """Mean cosine between distinct rows."""
    features = F.normalize(features, dim=-1)
    similarity, count = features @ features.T, len(features)
    return float((similarity.sum() - similarity.diagonal().sum()) / (count * count - count))


def build(variant: dict, args: argparse.Namespace, lists_dir: Path):
    """The model, its logits function, the parameter groups, the loss function (None: cross-entropy of the
    logits) and the class-cosine function (None for the CNN) of one variant."""
    torch.manual_seed(args.seed)
    if variant.get("cnn"):
        model = FrameStackCNN(args.frames)
        return model, model, [{"params": list(model.parameters()), "lr": args.learning_rate}], None, None
    config = json.loads(json.dumps(demo.DEMO_MODEL_CONFIG))
    config["vision_config"]["initializer_range"] = variant.get(
        "patch_scale", config["vision_config"]["initializer_range"]
    )
    saved, demo.DEMO_MODEL_CONFIG = demo.DEMO_MODEL_CONFIG, config
    try:
        model_args, data_args, training_args = demo.demo_arguments(
            Path(tempfile.mkdtemp()), lists_dir, num_workers=0, progress=False, seed=args.seed,
            mean_pooling=variant.get("mean_pooling", False),
        )  # fmt: skip
    finally:
        demo.DEMO_MODEL_CONFIG = saved
    data_args.num_frames, data_args.image_size = args.frames, args.size
    model = prepare_run(model_args, data_args, training_args).model
    if variant.get("warm_start", True) and not variant.get("class_vectors"):
        warm_start_text_tower(model, training_args.text_warm_start_steps, args.learning_rate)
    text = {id(p) for p in model.claver.text_parameters()}
    video = [p for p in model.parameters() if id(p) not in text]
    groups = [{"params": video, "lr": args.learning_rate}]
    if variant.get("class_vectors"):
        vectors = nn.Parameter(torch.randn(NUM_CLASSES, model.config.projection_dim))
        groups.append({"params": [vectors], "lr": args.learning_rate})

        def logits(pixel_values: torch.Tensor) -> torch.Tensor:
            embeds = model.claver.get_video_features(pixel_values=pixel_values).pooler_output
            return (
                model.claver.logit_scale.exp() * F.normalize(embeds, dim=-1) @ F.normalize(vectors, dim=-1).T
            )

        return model, logits, groups, None, lambda: mean_cosine(vectors.detach())
    groups.append(
        {"params": [p for p in model.parameters() if id(p) in text], "lr": args.learning_rate * 0.1}
    )

    def classifier_loss(pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=pixel_values, labels=labels).loss  # over sampled text views, as in training

    def classifier_logits(pixel_values: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=pixel_values).logits

    return model, classifier_logits, groups, classifier_loss, lambda: mean_class_cosine(model)


def train(name: str, variant: dict, data: dict, args: argparse.Namespace, lists_dir: Path) -> dict:
    model, logits_of, groups, classifier_loss, class_cosine = build(variant, args, lists_dir)
    probe = sample_frames(data["validation"][0][::5], args.frames, training=False)  # 4 videos per class

    def cosines() -> str:
        """Mean cosine between the probe videos' embeddings and between the classes' text (or vectors)."""
        if class_cosine is None:
            return ""
        model.eval()
        with torch.no_grad():
            videos = mean_cosine(model.claver.get_video_features(pixel_values=probe).pooler_output)
        return f"  cosine between videos {videos:.3f}, between classes {class_cosine():.3f}"

    print(f"{name:34s} start{cosines()}", flush=True)
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    base_rates = [group["lr"] for group in groups]
    pixels, labels = data["train"]
    augmentation = (
        LabelSymmetryAugmentation(synthetic_label_symmetries(), dict(enumerate(SYNTHETIC_CLASSES)))
        if variant.get("symmetries", True)
        else None
    )
    steps = args.epochs * math.ceil(len(labels) / args.batch_size)
    warmup, step, start = max(1, int(0.05 * steps)), 0, time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        losses = []
        for batch in torch.randperm(len(labels)).split(args.batch_size):
            factor = (
                step / warmup
                if step < warmup
                else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))
            )
            for group, rate in zip(optimizer.param_groups, base_rates, strict=True):
                group["lr"] = rate * factor
            clips, targets = sample_frames(pixels[batch], args.frames, training=True), labels[batch]
            if augmentation is not None:
                transformed = [
                    augmentation(clip, int(target)) for clip, target in zip(clips, targets, strict=True)
                ]
                clips = torch.stack([clip for clip, _ in transformed])
                targets = torch.tensor([target for _, target in transformed])
            if classifier_loss is not None:
                loss = classifier_loss(clips, targets)
            else:
                loss = F.cross_entropy(logits_of(clips), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
        model.eval()
        scores = {}
        with torch.no_grad():
            for split in ("train", "validation", "heldout"):
                split_pixels, split_labels = data[split]
                if split == "train":  # the first 20 clips of each class
                    seen = (torch.arange(len(split_labels)) % args.per_class) < 20
                    split_pixels, split_labels = split_pixels[seen], split_labels[seen]
                clips = sample_frames(split_pixels, args.frames, training=False)
                logits = torch.cat([logits_of(chunk) for chunk in clips.split(64)])
                scores[split] = pair_scores(logits, split_labels)
        print(
            f"{name:34s} epoch {epoch:2d}  loss {np.mean(losses):.3f}  training clips {scores['train']['top1']:.3f}  "
            f"validation {scores['validation']['top1']:.3f}  "
            f"held-out {scores['heldout']['top1']:.3f}  ({time.perf_counter() - start:.0f} s){cosines()}",
            flush=True,
        )
    return {"fit": scores["train"]["top1"], "validation": scores["validation"]["top1"], **scores["heldout"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument(
        "--per-class", type=int, default=200, help="training clips per class (validation 20, held-out 40)"
    )
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=demo.DEMO_LEARNING_RATE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    if RENDERED_FRAMES % args.frames:
        parser.error(f"--frames must divide {RENDERED_FRAMES}")

    print(machine_description())
    start = time.perf_counter()
    data = {
        "train": render_split(args.per_class, 0, args.size),
        "validation": render_split(20, 1, args.size),
        "heldout": render_split(40, 3, args.size, heldout=True),
    }
    print(
        f"{len(data['train'][1])} training clips rendered in {time.perf_counter() - start:.0f} s", flush=True
    )
    with tempfile.TemporaryDirectory() as folder:
        # prepare_run reads the class list and annotation lists of a dataset folder: a one-clip-per-class one.
        lists_dir = write_synthetic_dataset(
            Path(folder) / "lists", num_train_per_class=1, num_val_per_class=1, num_test_per_class=0,
            num_heldout_per_class=0, size=32, num_frames=8, progress=False,
        )["root"]  # fmt: skip
        results = {name: train(name, VARIANTS[name], data, args, lists_dir) for name in args.variants}

    print(
        "\n| variant | training clips top-1 | validation top-1 | held-out top-1 | held-out accuracy per pair | "
        "right directions per pair |"
    )
    print("|---|---:|---:|---:|---|---|")
    for name, scores in results.items():
        own = " / ".join(f"{value:.2f}" for value in scores["pair_own"])
        directions = " / ".join(f"{value:.2f}" for value in scores["pair_direction"])
        print(
            f"| {name} | {scores['fit']:.3f} | {scores['validation']:.3f} | {scores['top1']:.3f} | {own} | "
            f"{directions} |"
        )
    print("(pairs: left/right, up/down, clockwise/anticlockwise, growing/shrinking, appearing/disappearing)")


if __name__ == "__main__":
    main()
