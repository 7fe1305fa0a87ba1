"""CLAVER model configuration: CLIP's configs plus the Kronecker mask temporal transformer."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig

# Kept equal to `claver_hf.modeling.kronecker.KRONECKER_MASK_TYPES` (a test checks it); the layer module
# must not import CLAVER code, and the config must not import modeling code.
KRONECKER_MASK_TYPES = ("kmta", "kmcta", "joint", "spatial", "divided", "cls_temporal")


@strict
class ClaverVisionConfig(CLIPVisionConfig):
    r"""
    Configuration of CLAVER's video encoder: CLIP's vision tower applied to every frame, followed by a
    temporal embedding and `kmt_num_hidden_layers` Kronecker mask transformer (KMT) blocks over the `T·L`
    tokens of a clip. All CLIP vision fields keep their meaning.

    Args:
        num_frames (`int`, *optional*, defaults to 8):
            Number of frames the temporal embedding is trained for. Clips with another frame count are
            accepted: the temporal embedding is interpolated to their length.
        kmt_num_hidden_layers (`int`, *optional*):
            Number of KMT blocks. Defaults to `num_hidden_layers // 3` (4 for ViT-B, 8 for ViT-L). `0` gives
            the mean-pooling baseline (per-frame CLIP embeddings averaged over time).
        kronecker_mask (`str`, *optional*, defaults to `"kmta"`):
            The attention mask of the KMT blocks: `"kmta"` (Kronecker mask temporal attention), `"kmcta"`
            (causal variant), or one of the ablations `"joint"`, `"spatial"`, `"divided"`, `"cls_temporal"`.
        use_temporal_embedding (`bool`, *optional*, defaults to `True`):
            Whether a learned per-frame embedding is added before the KMT blocks.
        temporal_initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal that initialises the temporal embedding.
        position_initializer_range (`float`, *optional*):
            Standard deviation of the normal that initialises the spatial position embedding. Unset: CLIP's
            `initializer_range`, which also sets the patch embedding's. Matters only when training from scratch.
        zero_init_temporal (`bool`, *optional*, defaults to `False`):
            Initialise the temporal parts at zero instead of randomly (the paper's choice): the temporal embedding
            and, in every KMT block, the attention output projection and the MLP's output layer (weights and
            biases). Each KMT block then starts as the identity, so a model made from CLIP weights computes exactly
            CLIP's zero-shot scores of its frames, averaged over time, before any training. Not in the paper.

    Example:

    ```python
    >>> from claver_hf import ClaverVisionConfig
    >>> config = ClaverVisionConfig(patch_size=16, num_frames=16, kronecker_mask="kmcta")
    >>> config.kmt_num_hidden_layers
    4
    ```"""

    model_type = "claver_vision_model"
    base_config_key = "vision_config"

    num_frames: int = 8
    kmt_num_hidden_layers: int | None = None
    kronecker_mask: str = "kmta"
    use_temporal_embedding: bool = True
    temporal_initializer_range: float = 0.02
    position_initializer_range: float | None = None
    zero_init_temporal: bool = False

    def __post_init__(self, **kwargs):
        if self.kmt_num_hidden_layers is None:
            self.kmt_num_hidden_layers = self.num_hidden_layers // 3
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        """Part of `@strict` validation: reject values the video encoder cannot be built with."""
        super().validate_architecture()
        if self.kronecker_mask not in KRONECKER_MASK_TYPES:
            raise ValueError(
                f"`kronecker_mask` must be one of {KRONECKER_MASK_TYPES}, got {self.kronecker_mask!r}."
            )
        if self.num_frames < 1:
            raise ValueError(f"`num_frames` must be a positive number of frames, got {self.num_frames}.")
        if self.kmt_num_hidden_layers < 0:
            raise ValueError(
                f"`kmt_num_hidden_layers` must be >= 0 (0 means mean pooling), got {self.kmt_num_hidden_layers}."
            )
        image_size, patch_size = _as_int(self.image_size), _as_int(self.patch_size)
        if image_size % patch_size != 0:
            raise ValueError(
                f"`image_size` ({image_size}) must be a multiple of `patch_size` ({patch_size})."
            )


def _architecture(config: PreTrainedConfig) -> dict:
    """The fields of a sub-config that describe its architecture (no model type, version or task fields)."""
    skip = {"model_type", "transformers_version", "architectures", "id2label", "label2id"}
    return {k: v for k, v in config.to_dict().items() if k not in skip}


def _as_int(size: int | list[int] | tuple[int, int]) -> int:
    if isinstance(size, int):
        return size
    if len(set(size)) != 1:
        raise ValueError(f"CLAVER needs square images and patches, got {size}.")
    return int(size[0])


@strict
class ClaverConfig(CLIPConfig):
    r"""
    Configuration of a CLAVER model: a [`ClaverVisionConfig`] video encoder and CLIP's text encoder
    ([`~transformers.CLIPTextConfig`]), joined in a shared embedding space as in CLIP.

    Args:
        text_config (`dict` or `CLIPTextConfig`, *optional*): the text tower, CLIP's unchanged.
        vision_config (`dict` or `ClaverVisionConfig`, *optional*): the video encoder.
        projection_dim (`int`, *optional*, defaults to 512): size of the joint embedding space.
        logit_scale_init_value (`float`, *optional*, defaults to 2.6592): initial `logit_scale` (CLIP's value).
        num_text_views_per_step (`int`, *optional*, defaults to 5):
            Text views drawn at random (with replacement) for every class at each training step of
            [`ClaverForVideoClassification`] (docs/text-bank.md#training-step: K = 5).
        text_bank_num_views (`int`, *optional*, defaults to 0):
            Views (templates + interpretive prompts) per class in the stored text bank of
            [`ClaverForVideoClassification`]; 0 means no bank yet.
        text_bank_max_length (`int`, *optional*, defaults to 77): token length of the stored text bank.
        label_smoothing (`float`, *optional*, defaults to 0.0): label smoothing of the classification loss.

    Example:

    ```python
    >>> from claver_hf import ClaverConfig, ClaverModel
    >>> config = ClaverConfig(vision_config={"patch_size": 16, "kronecker_mask": "kmcta"})
    >>> model = ClaverModel(config)  # randomly initialised CLAVER-B/16
    ```"""

    model_type = "claver"
    sub_configs_defaults = {"vision_config": ClaverVisionConfig, "text_config": CLIPTextConfig}

    text_config: dict | CLIPTextConfig | None = None
    vision_config: dict | ClaverVisionConfig | None = None
    num_text_views_per_step: int = 5
    text_bank_num_views: int = 0
    text_bank_max_length: int = 77
    label_smoothing: float = 0.0

    @property
    def num_frames(self) -> int:
        """Frames per clip the model was configured for (read by `pipeline("video-classification")`)."""
        return self.vision_config.num_frames

    @classmethod
    def from_clip_config(cls, clip_config: CLIPConfig, **kwargs) -> ClaverConfig:
        """A CLAVER config with the towers of `clip_config`.

        Keyword arguments that are [`ClaverVisionConfig`] fields (`num_frames`, `kronecker_mask`,
        `kmt_num_hidden_layers`, ...) go to the vision config, the rest to this config.
        """
        vision_fields = {f for f in ClaverVisionConfig.__dataclass_fields__} - set(
            PreTrainedConfig.__dataclass_fields__
        )
        vision_kwargs = {
            k: kwargs.pop(k) for k in list(kwargs) if k in vision_fields and kwargs[k] is not None
        }
        kwargs = {k: v for k, v in kwargs.items() if v is not None or k not in vision_fields}
        vision_config = ClaverVisionConfig(**{**_architecture(clip_config.vision_config), **vision_kwargs})
        return cls(
            text_config=_architecture(clip_config.text_config),
            vision_config=vision_config,
            projection_dim=clip_config.projection_dim,
            logit_scale_init_value=clip_config.logit_scale_init_value,
            initializer_factor=clip_config.initializer_factor,
            **kwargs,
        )

    def validate_architecture(self):
        """Part of `@strict` validation: reject values the model cannot be built with."""
        if self.num_text_views_per_step < 1:
            raise ValueError(f"`num_text_views_per_step` must be >= 1, got {self.num_text_views_per_step}.")
        if self.text_bank_num_views < 0:
            raise ValueError(f"`text_bank_num_views` must be >= 0, got {self.text_bank_num_views}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"`label_smoothing` must be in [0, 1), got {self.label_smoothing}.")
