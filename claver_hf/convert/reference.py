"""Convert checkpoints of the reference CLAVER implementation to a transformers folder.

The reference code keeps OpenAI CLIP's module names (docs/reference-code.md#checkpoint-names) and adds the temporal parts:

| reference key                                         | transformers key                                          |
|-------------------------------------------------------|-----------------------------------------------------------|
| `token_embedding.weight`                              | `text_model.embeddings.token_embedding.weight`            |
| `positional_embedding`                                | `text_model.embeddings.position_embedding.weight`         |
| `transformer.resblocks.{i}.*`                         | `text_model.encoder.layers.{i}.*`                         |
| `ln_final.*`                                          | `text_model.final_layer_norm.*`                           |
| `text_projection` (W×E)                               | `text_projection.weight` (E×W, transposed)                |
| `logit_scale`                                         | `logit_scale`                                             |
| `visual.conv1.weight`                                 | `vision_model.embeddings.patch_embedding.weight`          |
| `visual.class_embedding`                              | `vision_model.embeddings.class_embedding`                 |
| `visual.positional_embedding`                         | `vision_model.embeddings.position_embedding.weight`       |
| `visual.ln_pre.*`                                     | `vision_model.pre_layrnorm.*`                             |
| `visual.transformer.resblocks.{i}.*`                  | `vision_model.encoder.layers.{i}.*`                       |
| `visual.temporal_embedding` (1×T×D)                   | `vision_model.temporal_embedding.embedding`               |
| `visual.transformer_t.resblocks.{j}.temporal_*`       | `vision_model.temporal_encoder.layers.{j}.*`              |
| `visual.ln_post.*`                                    | `vision_model.post_layernorm.*`                           |
| `visual.proj` (D×E)                                   | `visual_projection.weight` (E×D, transposed)              |

Inside a block, `attn.in_proj_weight` / `attn.in_proj_bias` stack the query, key and value projections and are
split into `self_attn.{q,k,v}_proj`; `attn.out_proj` -> `self_attn.out_proj`, `ln_1` -> `layer_norm1`,
`mlp.c_fc` -> `mlp.fc1`, `mlp.c_proj` -> `mlp.fc2`, `ln_2` -> `layer_norm2` (KMT blocks prefix each of those
names with `temporal_`).

The architecture is read from the tensors' shapes; only the Kronecker mask type is not in the weights and is
given by the caller. Heads are `width // 64` as in OpenAI CLIP and the reference code.

Files are read with `torch.load(..., weights_only=True)`, which unpickles tensors and plain containers only:
a file holding other Python objects (a training-config object, say) is refused, and so is a TorchScript
archive (which `weights_only` cannot load safely). Extract the state dict from such files yourself, in an
environment where you trust them (see the error messages).

Example:

```python
>>> from claver_hf.convert import convert_reference_checkpoint
>>> convert_reference_checkpoint("claver_b16_k400.pth", "claver-b16-k400", kronecker_mask="kmta")  # doctest: +SKIP
PosixPath('claver-b16-k400')
```
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..configuration import ClaverConfig
from ..modeling import ClaverForVideoClassification, ClaverModel
from ..modeling.kronecker import KroneckerMaskType
from ..processing.processing_claver import ClaverProcessor
from ..processing.tokenization import CLIP_VOCAB_SIZE, clip_tokenizer
from ..processing.video_processing_claver import ClaverVideoProcessor

logger = logging.getLogger(__name__)
StateDict = dict[str, torch.Tensor]

# OpenAI CLIP's width per attention head; the reference code builds its KMT blocks the same way.
DEFAULT_HEAD_DIM = 64

TEMPORAL_EMBEDDING_KEY = "visual.temporal_embedding"
TEMPORAL_BLOCKS_PREFIX = "visual.transformer_t.resblocks"


@dataclass(frozen=True)
class KeyRule:
    """How one source tensor becomes one or more transformers tensors.

    `copy`: unchanged. `transpose`: a `proj` matrix (in × out) becomes an `nn.Linear.weight` (out × in).
    `split`: a stacked `in_proj_*` tensor becomes the query, key and value tensors, in that order.
    """

    targets: tuple[str, ...]
    kind: Literal["copy", "transpose", "split"] = "copy"

    def source_shape(self, target_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """The shape the source tensor must have to fill targets of `target_shapes`."""
        if self.kind == "transpose":
            return tuple(reversed(target_shapes[0]))
        if self.kind == "split":
            return (sum(shape[0] for shape in target_shapes), *target_shapes[0][1:])
        return target_shapes[0]

    def apply(self, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.kind == "transpose":
            return (tensor.t().contiguous(),)
        if self.kind == "split":
            # Cloned so that the parts do not share storage (safetensors refuses shared tensors).
            return tuple(part.clone() for part in tensor.chunk(len(self.targets), dim=0))
        return (tensor,)


# (source name inside a residual block, transformers name inside a CLIPEncoderLayer), weight and bias each.
_BLOCK_PARAMETERS = (
    ("attn.out_proj", "self_attn.out_proj"),
    ("ln_1", "layer_norm1"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
    ("ln_2", "layer_norm2"),
)


def _block_rules(source: str, target: str, temporal: bool = False) -> dict[str, KeyRule]:
    """Rules of one residual block `source` (OpenAI names; KMT blocks prefix them with `temporal_`)."""
    name = "temporal_" if temporal else ""
    rules = {
        f"{source}.{name}attn.in_proj_{param}": KeyRule(
            tuple(f"{target}.self_attn.{p}_proj.{param}" for p in "qkv"), "split"
        )
        for param in ("weight", "bias")
    }
    for src, dst in _BLOCK_PARAMETERS:
        for param in ("weight", "bias"):
            rules[f"{source}.{name}{src}.{param}"] = KeyRule((f"{target}.{dst}.{param}",))
    return rules


def _layer_norm_rules(source: str, target: str) -> dict[str, KeyRule]:
    return {f"{source}.{param}": KeyRule((f"{target}.{param}",)) for param in ("weight", "bias")}


def clip_key_rules(config: ClaverConfig) -> dict[str, KeyRule]:
    """Rules of every OpenAI CLIP tensor (both towers, projections, `logit_scale`) for `config`."""
    rules = {
        "token_embedding.weight": KeyRule(("text_model.embeddings.token_embedding.weight",)),
        "positional_embedding": KeyRule(("text_model.embeddings.position_embedding.weight",)),
        **_layer_norm_rules("ln_final", "text_model.final_layer_norm"),
        "text_projection": KeyRule(("text_projection.weight",), "transpose"),
        "logit_scale": KeyRule(("logit_scale",)),
        "visual.conv1.weight": KeyRule(("vision_model.embeddings.patch_embedding.weight",)),
        "visual.class_embedding": KeyRule(("vision_model.embeddings.class_embedding",)),
        "visual.positional_embedding": KeyRule(("vision_model.embeddings.position_embedding.weight",)),
        **_layer_norm_rules("visual.ln_pre", "vision_model.pre_layrnorm"),
        **_layer_norm_rules("visual.ln_post", "vision_model.post_layernorm"),
        "visual.proj": KeyRule(("visual_projection.weight",), "transpose"),
    }
    for i in range(config.text_config.num_hidden_layers):
        rules.update(_block_rules(f"transformer.resblocks.{i}", f"text_model.encoder.layers.{i}"))
    for i in range(config.vision_config.num_hidden_layers):
        rules.update(_block_rules(f"visual.transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}"))
    return rules


def temporal_key_rules(config: ClaverConfig) -> dict[str, KeyRule]:
    """Rules of the reference code's temporal embedding and KMT blocks for `config`."""
    rules = {TEMPORAL_EMBEDDING_KEY: KeyRule(("vision_model.temporal_embedding.embedding",))}
    for j in range(config.vision_config.kmt_num_hidden_layers):
        rules.update(
            _block_rules(f"{TEMPORAL_BLOCKS_PREFIX}.{j}", f"vision_model.temporal_encoder.layers.{j}", True)
        )
    return rules


def _require(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(
            f"The state dict has no `{key}`, which a ViT CLIP / CLAVER state dict in OpenAI's layout has "
            "(ResNet CLIP backbones, with `visual.attnpool`, are not supported)."
        )
    return state_dict[key]


def count_blocks(state_dict: Iterable[str], prefix: str) -> int:
    """Number of residual blocks `{prefix}.{i}.*`: the highest index + 1 (a gap shows up as missing keys)."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    indices = [int(m.group(1)) for key in state_dict if (m := pattern.match(key))]
    return max(indices) + 1 if indices else 0


def _num_heads(width: int, head_dim: int, tower: str) -> int:
    if width % head_dim != 0:
        raise ValueError(f"The {tower} width {width} is not a multiple of the head size {head_dim}.")
    return width // head_dim


def infer_clip_architecture(state_dict: Mapping[str, torch.Tensor], head_dim: int = DEFAULT_HEAD_DIM) -> dict:
    """`text_config`, `vision_config` and `projection_dim` of an OpenAI-style CLIP state dict, from its shapes.

    Text token ids follow OpenAI's vocabulary, whose last two entries are the start and end tokens (CLIP's
    text pooling reads the end token, the highest id): `bos = vocab_size - 2`, `eos = pad = vocab_size - 1`
    (`CLIPTokenizer` pads with `<|endoftext|>`).
    """
    conv = _require(state_dict, "visual.conv1.weight")  # (D, C, p, p)
    positions = _require(state_dict, "visual.positional_embedding")  # (L, D)
    vision_width, num_channels, patch_size = conv.shape[0], conv.shape[1], conv.shape[-1]
    grid = math.isqrt(positions.shape[0] - 1)
    if grid * grid != positions.shape[0] - 1:
        raise ValueError(
            f"`visual.positional_embedding` has {positions.shape[0]} positions, not 1 + a square number of "
            "patches."
        )
    vision_layers = count_blocks(state_dict, "visual.transformer.resblocks")
    vision_config = {
        "hidden_size": vision_width,
        "intermediate_size": _require(state_dict, "visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0],
        "num_hidden_layers": vision_layers,
        "num_attention_heads": _num_heads(vision_width, head_dim, "vision"),
        "num_channels": num_channels,
        "image_size": grid * patch_size,
        "patch_size": patch_size,
    }

    token_embedding = _require(state_dict, "token_embedding.weight")  # (vocab, W)
    vocab_size, text_width = token_embedding.shape
    text_config = {
        "hidden_size": text_width,
        "intermediate_size": _require(state_dict, "transformer.resblocks.0.mlp.c_fc.weight").shape[0],
        "num_hidden_layers": count_blocks(state_dict, "transformer.resblocks"),
        "num_attention_heads": _num_heads(text_width, head_dim, "text"),
        "vocab_size": vocab_size,
        "max_position_embeddings": _require(state_dict, "positional_embedding").shape[0],
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
    }
    projection_dim = _require(state_dict, "text_projection").shape[1]
    text_config["projection_dim"] = vision_config["projection_dim"] = projection_dim
    return {"text_config": text_config, "vision_config": vision_config, "projection_dim": projection_dim}


def expected_shapes(config: ClaverConfig) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor of a [`ClaverModel`] of `config` (built on the meta device: no memory, no init)."""
    with torch.device("meta"):
        model = ClaverModel(config)
    return {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}


def convert_with_rules(
    state_dict: Mapping[str, torch.Tensor], rules: Mapping[str, KeyRule], config: ClaverConfig
) -> StateDict:
    """Apply `rules` to `state_dict`, after checking that the keys match exactly and every shape fits `config`.

    Raises:
        ValueError: listing every unused key, every missing key, or every shape mismatch (key, expected
            shape, found shape).
    """
    unused = sorted(set(state_dict) - set(rules))
    if unused:
        raise ValueError(f"{len(unused)} keys of the state dict are not used by the conversion: {unused}")
    missing = sorted(set(rules) - set(state_dict))
    if missing:
        raise ValueError(f"{len(missing)} keys are missing from the state dict: {missing}")
    shapes = expected_shapes(config)
    mismatches = []
    for key, rule in rules.items():
        expected = rule.source_shape([shapes[target] for target in rule.targets])
        found = tuple(state_dict[key].shape)
        if found != expected:
            mismatches.append(f"  {key}: expected shape {expected}, found {found}")
    if mismatches:
        raise ValueError(
            f"{len(mismatches)} tensors do not have the shape the inferred architecture needs:\n"
            + "\n".join(mismatches)
        )
    converted: StateDict = {}
    for key, rule in rules.items():
        converted.update(zip(rule.targets, rule.apply(state_dict[key]), strict=True))
    return converted


def convert_reference_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    kronecker_mask: KroneckerMaskType = "kmta",
    *,
    head_dim: int = DEFAULT_HEAD_DIM,
) -> tuple[ClaverConfig, StateDict]:
    """Config and [`ClaverModel`] state dict of a reference CLAVER state dict.

    Args:
        state_dict: the reference model's state dict (the `"model"` entry of its checkpoint files).
        kronecker_mask: the KMT blocks' mask (`"kmta"`, `"kmcta"`, ...), which the weights do not record.
        head_dim: width per attention head (64 in OpenAI CLIP and the reference code).

    Returns:
        `(config, weights)`: the inferred [`ClaverConfig`] (frames from `visual.temporal_embedding`, KMT layers
        from `visual.transformer_t.resblocks.*`) and every [`ClaverModel`] tensor, in the source dtype.

    Raises:
        ValueError: on unused or missing keys, shape mismatches, or a state dict without temporal parts.
    """
    if TEMPORAL_EMBEDDING_KEY not in state_dict:
        raise ValueError(
            f"The state dict has no `{TEMPORAL_EMBEDDING_KEY}`: it is not a reference CLAVER state dict. For an "
            "OpenAI CLIP state dict use `convert_openai_clip`."
        )
    architecture = infer_clip_architecture(state_dict, head_dim)
    architecture["vision_config"].update(
        num_frames=state_dict[TEMPORAL_EMBEDDING_KEY].shape[1],
        kmt_num_hidden_layers=count_blocks(state_dict, TEMPORAL_BLOCKS_PREFIX),
        kronecker_mask=kronecker_mask,
    )
    config = ClaverConfig(**architecture)
    rules = {**clip_key_rules(config), **temporal_key_rules(config)}
    return config, convert_with_rules(state_dict, rules, config)


def load_state_dict_file(path: str | os.PathLike) -> StateDict:
    """The state dict of a `.pth` / `.pt` file: a state dict, or a dict holding one under `"model"`.

    Read with `torch.load(..., weights_only=True)`: no arbitrary object is unpickled.

    Raises:
        ValueError: for a TorchScript archive, a file with non-tensor objects, or a file without a state dict.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            # The test torch.load itself uses to recognise TorchScript archives.
            if any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist()):
                raise ValueError(
                    f"{path} is a TorchScript archive (such as OpenAI's CLIP `.pt` files). Loading one runs "
                    "TorchScript code, which `weights_only=True` cannot make safe, so it is not loaded here. If "
                    "you trust the file, save its state dict and convert that: `torch.save(torch.jit.load(path, "
                    'map_location="cpu").state_dict(), "state_dict.pth")`.'
                )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds objects other than tensors and plain containers, which `torch.load(weights_only=True)` "
            "refuses to unpickle. If you trust the file, save its state dict alone and convert that: "
            '`torch.save(torch.load(path, weights_only=False)["model"], "state_dict.pth")`.'
        ) from err
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        found = type(checkpoint).__name__ if not isinstance(checkpoint, dict) else sorted(checkpoint)[:10]
        raise ValueError(
            f"{path} is neither a state dict (names -> tensors) nor a dict with one under 'model'; found {found}."
        )
    return checkpoint


def save_converted(
    config: ClaverConfig,
    weights: StateDict,
    output_dir: str | os.PathLike,
    *,
    classification: bool = False,
    id2label: Mapping[int, str] | None = None,
    allow_missing: Iterable[str] = (),
) -> Path:
    """Build the model of `config`, load `weights` and `save_pretrained` it (config.json, model.safetensors
    and the model's source files).

    Tensors in `allow_missing` keep the model's own initialisation (`_init_weights`); every other tensor of the
    [`ClaverModel`] must be in `weights`. With `classification`, a [`ClaverForVideoClassification`] with an
    empty text bank is saved instead. `id2label` (class names) goes to the config.

    A text tower with CLIP's 49,408-token vocabulary was trained on CLIP's tokenizer (OpenAI's models and the
    reference code use no other): that tokenizer and a matching [`ClaverProcessor`] are saved too, so the folder
    is complete for fine-tuning and pipelines. Any other vocabulary is left to the caller, with a warning.
    """
    if id2label is not None:
        config.id2label = {int(i): name for i, name in id2label.items()}
        config.label2id = {name: i for i, name in config.id2label.items()}
    model = ClaverForVideoClassification(config) if classification else ClaverModel(config)
    base = model.claver if classification else model
    result = base.load_state_dict(weights, strict=False)
    missing = sorted(set(result.missing_keys) - set(allow_missing))
    if missing or result.unexpected_keys:
        raise RuntimeError(
            f"Converted weights do not fit the model: missing {missing}, unexpected {result.unexpected_keys}."
        )
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    if config.text_config.vocab_size == CLIP_VOCAB_SIZE:
        vision = config.vision_config
        video_processor = ClaverVideoProcessor(
            num_frames=vision.num_frames,
            size={"shortest_edge": vision.image_size},
            crop_size={"height": vision.image_size, "width": vision.image_size},
        )
        ClaverProcessor(video_processor=video_processor, tokenizer=clip_tokenizer()).save_pretrained(
            output_dir
        )
    else:
        logger.warning(
            f"No tokenizer saved in {output_dir}: the text tower has {config.text_config.vocab_size} tokens, not "
            f"CLIP's {CLIP_VOCAB_SIZE}. Save the tokenizer it was trained with there before fine-tuning."
        )
    return output_dir


def convert_reference_checkpoint(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    kronecker_mask: KroneckerMaskType = "kmta",
    id2label: dict[int, str] | None = None,
    classification: bool = False,
    head_dim: int = DEFAULT_HEAD_DIM,
) -> Path:
    """Convert a reference CLAVER checkpoint file to a transformers folder.

    Args:
        path: a `.pth` file holding `{"model": state_dict, ...}` or the state dict itself.
        output_dir: folder to save the model to (`config.json`, float32 `model.safetensors`, source files).
        kronecker_mask: the mask the checkpoint was trained with (not recorded in the weights).
        id2label: class names stored in the config.
        classification: save a [`ClaverForVideoClassification`] (its text bank is empty: call
            `set_text_bank` before classifying) instead of a [`ClaverModel`].
        head_dim: width per attention head (64 in the reference code).

    Returns:
        `output_dir`, loadable with `ClaverModel.from_pretrained` (or `AutoModelForVideoClassification` with
        `classification=True`).
    """
    config, weights = convert_reference_state_dict(
        load_state_dict_file(path), kronecker_mask, head_dim=head_dim
    )
    return save_converted(config, weights, output_dir, classification=classification, id2label=id2label)


__all__ = [
    "convert_reference_checkpoint",
    "convert_reference_state_dict",
    "infer_clip_architecture",
    "load_state_dict_file",
]
