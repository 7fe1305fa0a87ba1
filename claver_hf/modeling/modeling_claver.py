"""PyTorch CLAVER: CLIP's towers with a Kronecker mask temporal transformer on the video side.

Shapes: `B` videos, `T` frames, `L = (image_size / patch_size)² + 1` tokens per frame, `D` vision width,
`E` projection size, `C` classes, `V` text views per class, `S` text length.
"""

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.symbolic_shapes import statically_known_true
from transformers import CLIPConfig
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import (
    CLIPAttention,
    CLIPEncoder,
    CLIPEncoderLayer,
    CLIPPreTrainedModel,
    CLIPTextModel,
    CLIPVisionEmbeddings,
)
from transformers.utils import ModelOutput, logging

from .._compat import (
    CheckAttnImplementation,
    InitializeEveryModule,
    OutputRecorder,
    can_return_tuple,
    capture_outputs,
    from_config,
)
from ..configuration.configuration_claver import ClaverConfig, ClaverVisionConfig
from ..remote_code import save_remote_code
from .kronecker import KroneckerEncoderLayer, KroneckerMaskAttention, check_kronecker_attn_implementation
from .scoring import class_log_probs, text_view_logits, view_averaged_log_probs
from .text_bank import ClaverTextBank

logger = logging.get_logger(__name__)


@dataclass
class ClaverVisionModelOutput(ModelOutput):
    r"""
    last_hidden_state (`torch.FloatTensor` of shape `(B, T·L, D)`):
        Tokens of all frames after the KMT blocks, frame-major.
    pooler_output (`torch.FloatTensor` of shape `(B, T, D)`):
        Each frame's class token after the KMT blocks and `post_layernorm`.
    hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
        Per-frame CLIP encoder states, each `(B·T, L, D)`: the embeddings, then one per CLIP layer.
    attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`, eager only):
        Per-frame CLIP attention weights, each `(B·T, heads, L, L)`.
    temporal_hidden_states (`tuple(torch.FloatTensor)`, *optional*, with `output_temporal_hidden_states=True`):
        Output of each KMT block, each `(B, T·L, D)`.
    temporal_attentions (`tuple(torch.FloatTensor)`, *optional*, with `output_temporal_attentions=True`, eager only):
        Attention weights of each KMT block, each `(B, heads, T·L, T·L)`; blocked entries are exactly 0.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    temporal_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    temporal_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class ClaverVideoFeaturesOutput(ClaverVisionModelOutput):
    r"""
    Output of [`ClaverModel.get_video_features`]: the vision tower's output with the projections added.

    pooler_output (`torch.FloatTensor` of shape `(B, E)`):
        The video embedding: mean over frames of the L2-normalised frame embeddings (not re-normalised).
    frame_embeds (`torch.FloatTensor` of shape `(B, T, E)`):
        L2-normalised per-frame embeddings.
    """

    frame_embeds: torch.FloatTensor | None = None


@dataclass
class ClaverOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss` is `True`):
        Symmetric video-text contrastive loss (video `i` matches text `i`).
    logits_per_video (`torch.FloatTensor` of shape `(B, K)`):
        `logit_scale.exp()` × similarity of each video embedding with each normalised text embedding.
    logits_per_text (`torch.FloatTensor` of shape `(K, B)`): the transpose.
    video_embeds (`torch.FloatTensor` of shape `(B, E)`): mean of normalised frame embeddings.
    text_embeds (`torch.FloatTensor` of shape `(K, E)`): normalised text embeddings.
    frame_embeds (`torch.FloatTensor` of shape `(B, T, E)`): normalised per-frame embeddings.
    text_model_output (`BaseModelOutputWithPooling`): output of the text tower.
    vision_model_output (`ClaverVideoFeaturesOutput`): output of the video encoder.
    """

    loss: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    frame_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: ClaverVideoFeaturesOutput | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


@dataclass
class ClaverVideoClassifierOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
        Training: cross-entropy over classes averaged over the `B·K` (video, sampled text view) pairs.
        Evaluation: negative log of the view-averaged class probability of the label.
    logits (`torch.FloatTensor` of shape `(B, C)`):
        Log of the class probabilities averaged over text views (and test views), so `logits.softmax(-1)` is that
        average (see [`class_log_probs`]).
    video_embeds (`torch.FloatTensor` of shape `(B, E)`, or `(B, N, E)` for `N` test views): the video embeddings.
    vision_model_output (`ClaverVideoFeaturesOutput`): output of the video encoder.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    vision_model_output: ClaverVideoFeaturesOutput | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


def _resample_frames(embedding: torch.Tensor, num_frames: int) -> torch.Tensor:
    """`(1, T, D)` per-frame embedding -> `(1, num_frames, D)`, linearly interpolated along time."""
    # `statically_known_true`: with a symbolic frame count (`torch.export` with a dynamic frame dimension) the
    # comparison is unknown while tracing and must not pin the count; interpolating to the same length is exact.
    if statically_known_true(embedding.shape[1] == num_frames):
        return embedding
    return F.interpolate(
        embedding.transpose(1, 2), size=num_frames, mode="linear", align_corners=False
    ).transpose(1, 2)


class ClaverTemporalEmbedding(nn.Module):
    """Learned per-frame embedding `(1, num_frames, D)` added to every token of a frame.

    Clips with `T != num_frames` frames get the embedding linearly interpolated along time, so a model trained
    on 8 frames runs on 16 or 32 without reloading.
    """

    def __init__(self, config: ClaverVisionConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Parameter(torch.zeros(1, config.num_frames, config.hidden_size))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """`frames`: `(B, T, L, D)` -> the same plus the temporal embedding of each frame."""
        embedding = _resample_frames(self.embedding, frames.shape[1])
        return frames + embedding.to(frames.dtype).unsqueeze(2)


class ClaverTemporalEncoder(nn.Module):
    """`kmt_num_hidden_layers` [`KroneckerEncoderLayer`]s sharing one Kronecker mask."""

    def __init__(self, config: ClaverVisionConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(
            [
                KroneckerEncoderLayer(config, config.kronecker_mask)
                for _ in range(config.kmt_num_hidden_layers)
            ]
        )

    def forward(self, hidden_states: torch.Tensor, num_frames: int, **kwargs) -> torch.Tensor:
        """`hidden_states`: `(B, T·L, D)` frame-major -> `(B, T·L, D)`."""
        for layer in self.layers:
            hidden_states = layer(hidden_states, num_frames=num_frames, **kwargs)
        return hidden_states


class ClaverPreTrainedModel(InitializeEveryModule, CheckAttnImplementation, CLIPPreTrainedModel):
    config: ClaverConfig
    base_model_prefix = "claver"
    # CLIP's flags minus flash attention and external attention backends (vLLM, SGLang): the KMT blocks pass 4-D
    # masks that those kernels cannot take or ignore. The text tower alone, a `CLIPTextModel`, keeps CLIP's flags.
    _supports_flash_attn = False
    _supports_attention_backend = False
    # A classifier's checkpoint carries its text bank (`text_bank.*`, `text_bank_*` before it was a module), which
    # the other classes have no use for (and a CLIP or plain CLAVER checkpoint lacks it: the classifier starts with
    # an empty bank).
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)text_bank[._]"]
    _keys_to_ignore_on_load_missing = [r"(^|\.)text_bank[._]"]
    input_modalities = ("video", "text")
    _no_split_modules = [
        "CLIPTextEmbeddings",
        "CLIPEncoderLayer",
        "CLIPVisionEmbeddings",
        "KroneckerEncoderLayer",
    ]
    _can_record_outputs = {
        # CLIP's per-frame layers only; the KMT blocks (also CLIP layer subclasses) are recorded separately.
        "hidden_states": OutputRecorder(CLIPEncoderLayer, layer_name="encoder"),
        "attentions": OutputRecorder(CLIPAttention, index=1, layer_name="encoder"),
        "temporal_hidden_states": OutputRecorder(KroneckerEncoderLayer, capture_initial_hidden_state=False),
        "temporal_attentions": OutputRecorder(KroneckerMaskAttention, index=1),
    }

    def get_correct_attn_implementation(
        self, requested_attention: str | None, is_init_check: bool = False
    ) -> str:
        # `set_attn_implementation` checks the sub-models (the vision tower of a `ClaverModel`) through this one.
        self._check_attn_implementation(requested_attention)
        return super().get_correct_attn_implementation(requested_attention, is_init_check=is_init_check)

    def _check_attn_implementation(self, implementation: str | None) -> None:
        hint = ""
        if hasattr(self.config, "text_config"):
            hint = (
                " The text tower (a CLIP text model) can use other kernels on its own: "
                f"attn_implementation={{'text_config': {implementation!r}, 'vision_config': 'sdpa'}}."
            )
        check_kronecker_attn_implementation(implementation, type(self).__name__, hint)

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ClaverTemporalEmbedding):
            if module.config.zero_init_temporal:
                init.zeros_(module.embedding)
            else:
                init.trunc_normal_(module.embedding, std=module.config.temporal_initializer_range)
        elif isinstance(module, ClaverTemporalEncoder) and module.config.zero_init_temporal:
            # The layers (children) were initialised first; zero residual branches make each block the identity.
            for layer in module.layers:
                for linear in (layer.self_attn.out_proj, layer.mlp.fc2):
                    init.zeros_(linear.weight)
                    init.zeros_(linear.bias)
        elif (
            isinstance(module, CLIPVisionEmbeddings) and module.config.position_initializer_range is not None
        ):
            init.normal_(module.position_embedding.weight, std=module.config.position_initializer_range)
        elif isinstance(module, ClaverModel):
            init.normal_(
                module.text_projection.weight,
                std=module.text_embed_dim**-0.5 * self.config.initializer_factor,
            )
            init.normal_(
                module.visual_projection.weight,
                std=module.vision_embed_dim**-0.5 * self.config.initializer_factor,
            )
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        elif isinstance(module, ClaverTextBank):
            init.zeros_(module.input_ids)
            init.zeros_(module.attention_mask)
            init.zeros_(module.view_mask)

    def _remote_code_auto_map(self) -> dict[str, type]:
        """Auto class -> the class it builds from a saved folder of this model: what claver_hf registers for
        the config's class, so that `trust_remote_code=True` builds what claver-hf would."""
        return {
            "AutoConfig": ClaverConfig,
            "AutoModel": ClaverModel,
            "AutoModelForVideoClassification": ClaverForVideoClassification,
        }

    def save_pretrained(
        self, save_directory: str | os.PathLike, is_main_process: bool = True, **kwargs
    ) -> None:
        """`PreTrainedModel.save_pretrained`, plus the model's source files and their `auto_map` in
        `config.json`: the folder then loads with `trust_remote_code=True` without claver-hf installed."""
        if self.should_save_on_this_rank(is_main_process):
            save_remote_code(self.config, self._remote_code_auto_map(), save_directory)
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)


class ClaverVisionModel(ClaverPreTrainedModel):
    """CLAVER's video encoder without projection: CLIP's vision tower per frame, temporal embedding, KMT blocks.

    Attribute names follow [`~transformers.CLIPVisionModel`] (`embeddings`, `pre_layrnorm`, `encoder`,
    `post_layernorm`), so CLIP vision weights load without key mapping; `temporal_embedding` and
    `temporal_encoder` are CLAVER's own.
    """

    config: ClaverVisionConfig
    main_input_name = "pixel_values"
    input_modalities = ("video",)
    _input_embed_layer = "patch_embedding"

    def __init__(self, config: ClaverVisionConfig):
        super().__init__(config)
        embed_dim = config.hidden_size
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.encoder = CLIPEncoder(config)
        self.temporal_embedding = ClaverTemporalEmbedding(config) if config.use_temporal_embedding else None
        self.temporal_encoder = ClaverTemporalEncoder(config)
        self.post_layernorm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.post_init()

    def _remote_code_auto_map(self) -> dict[str, type]:
        return {"AutoConfig": ClaverVisionConfig, "AutoModel": ClaverVisionModel}

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embedding

    @torch.no_grad()
    def resize_temporal_embedding(self, num_frames: int) -> None:
        """Store the temporal embedding resampled to `num_frames` frames (linear interpolation along time, the same
        as the forward pass applies to clips of another length) and make `num_frames` the configured length."""
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be a positive number of frames, got {num_frames}.")
        if self.temporal_embedding is not None:
            embedding = self.temporal_embedding.embedding
            self.temporal_embedding.embedding = nn.Parameter(
                _resample_frames(embedding, num_frames).contiguous(), requires_grad=embedding.requires_grad
            )
        self.config.num_frames = num_frames

    @torch.no_grad()
    def resize_position_embeddings(self, image_size: int) -> None:
        """Store the spatial position embeddings resampled to frames of `image_size` pixels (bicubic over the patch
        grid, CLIP's `interpolate_pos_encoding`, which the forward pass applies on the fly with
        `interpolate_pos_encoding=True`) and make `image_size` the configured size."""
        embeddings = self.embeddings
        patch_size = embeddings.patch_size
        if image_size < patch_size or image_size % patch_size != 0:
            raise ValueError(
                f"Frames of {image_size} pixels cannot be used with this model: the position embeddings are resampled "
                f"to a grid of {patch_size}-pixel patches, so the size must be a positive multiple of {patch_size}."
            )
        if image_size == embeddings.image_size:
            return
        num_positions = (image_size // patch_size) ** 2 + 1
        table = embeddings.position_embedding.weight
        shape_only = torch.empty(1, num_positions, table.shape[1], device="meta")
        resampled = embeddings.interpolate_pos_encoding(shape_only, image_size, image_size)[0]
        embeddings.position_embedding = nn.Embedding.from_pretrained(resampled.contiguous(), freeze=False)
        embeddings.position_embedding.weight.requires_grad_(table.requires_grad)
        embeddings.position_ids = torch.arange(num_positions, device=table.device).expand((1, -1))
        embeddings.image_size, embeddings.num_patches, embeddings.num_positions = (
            image_size, num_positions - 1, num_positions
        )  # fmt: skip
        self.config.image_size = image_size

    def _check_pixel_values(self, pixel_values: torch.Tensor | None, interpolate_pos_encoding: bool) -> None:
        if pixel_values is None:
            raise ValueError(
                "`pixel_values` is required: a tensor of shape (batch, frames, channels, height, width)."
            )
        if pixel_values.ndim != 5:
            raise ValueError(
                "`pixel_values` must have shape (batch, frames, channels, height, width), got a "
                f"{pixel_values.ndim}-D tensor of shape {tuple(pixel_values.shape)}."
            )
        batch, frames, channels, height, width = pixel_values.shape
        if batch == 0 or frames == 0:
            raise ValueError(
                f"`pixel_values` must hold at least one video of at least one frame, got shape {tuple(pixel_values.shape)}."
            )
        if channels != self.config.num_channels:
            raise ValueError(
                f"`pixel_values` must have {self.config.num_channels} channels in dimension 2 "
                f"(batch, frames, channels, height, width), got {channels} (shape {tuple(pixel_values.shape)})."
            )
        size = self.config.image_size
        if not interpolate_pos_encoding and (height, width) != (size, size):
            raise ValueError(
                f"`pixel_values` frames must be {size}x{size} for this model, got {height}x{width}; resize them "
                "or pass `interpolate_pos_encoding=True`."
            )

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> ClaverVisionModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(B, T, C, H, W)`):
            Normalised frames. Any `T >= 1` is accepted.
        interpolate_pos_encoding (`bool`, defaults to `False`):
            Interpolate CLIP's spatial position embeddings for frames of another size.
        """
        self._check_pixel_values(pixel_values, interpolate_pos_encoding)
        batch_size, num_frames = pixel_values.shape[:2]

        frames = pixel_values.flatten(0, 1)
        hidden_states = self.embeddings(frames, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden_states = self.pre_layrnorm(hidden_states)
        hidden_states = self.encoder(inputs_embeds=hidden_states, **kwargs).last_hidden_state  # (B·T, L, D)

        tokens_per_frame, width = hidden_states.shape[1:]
        hidden_states = hidden_states.view(batch_size, num_frames, tokens_per_frame, width)
        if self.temporal_embedding is not None:
            hidden_states = self.temporal_embedding(hidden_states)
        hidden_states = hidden_states.reshape(batch_size, num_frames * tokens_per_frame, width)
        hidden_states = self.temporal_encoder(hidden_states, num_frames=num_frames, **kwargs)

        class_tokens = hidden_states.view(batch_size, num_frames, tokens_per_frame, width)[:, :, 0]
        return ClaverVisionModelOutput(
            last_hidden_state=hidden_states,
            pooler_output=self.post_layernorm(class_tokens),
        )


def _from_clip_pretrained(cls, pretrained_model_name_or_path: str, **kwargs):
    config_fields = set(ClaverConfig.__dataclass_fields__) | set(ClaverVisionConfig.__dataclass_fields__)
    config_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in config_fields}
    clip_config = CLIPConfig.from_pretrained(pretrained_model_name_or_path)
    config = ClaverConfig.from_clip_config(clip_config, **config_kwargs)
    return cls.from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)


def _l2_normalize(tensor: torch.Tensor) -> torch.Tensor:
    return tensor / tensor.norm(p=2, dim=-1, keepdim=True)


class ClaverModel(ClaverPreTrainedModel):
    """CLAVER: a video encoder ([`ClaverVisionModel`]) and CLIP's text encoder in one embedding space.

    Keeps CLIP's attribute names (`text_model`, `vision_model`, `visual_projection`, `text_projection`,
    `logit_scale`): `ClaverModel.from_pretrained(<CLIP checkpoint>)` loads every CLIP weight without key
    mapping, and only CLAVER's temporal weights are reported missing (see [`from_clip_pretrained`]).
    """

    def __init__(self, config: ClaverConfig):
        super().__init__(config)
        text_config, vision_config = config.text_config, config.vision_config
        self.projection_dim = config.projection_dim
        self.text_embed_dim = text_config.hidden_size
        self.vision_embed_dim = vision_config.hidden_size

        self.text_model = from_config(CLIPTextModel, text_config)
        self.vision_model = from_config(ClaverVisionModel, vision_config)
        self.visual_projection = nn.Linear(self.vision_embed_dim, self.projection_dim, bias=False)
        self.text_projection = nn.Linear(self.text_embed_dim, self.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    @classmethod
    def from_clip_pretrained(cls, pretrained_model_name_or_path: str, **kwargs) -> "ClaverModel":
        """A CLAVER model built from a CLIP checkpoint (a local folder or a Hub id).

        Every CLIP tensor is loaded unchanged; the temporal embedding and the KMT blocks start from
        `_init_weights` and are listed as missing keys in the load report. Keyword arguments that are
        [`ClaverConfig`] or [`ClaverVisionConfig`] fields (`num_frames`, `kronecker_mask`, `id2label`, ...) go to
        the config, the rest to `from_pretrained`.
        """
        return _from_clip_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """Text tower output with `pooler_output` replaced by the projected (not normalised) `(K, E)` embeddings."""
        text_outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            return_dict=True,
            **kwargs,
        )
        text_outputs.pooler_output = self.text_projection(text_outputs.pooler_output)
        return text_outputs

    def text_parameters(self) -> list[nn.Parameter]:
        """Every weight the text embeddings depend on: the text tower and the text projection."""
        return [*self.text_model.parameters(), *self.text_projection.parameters()]

    def encode_texts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int = 1024
    ) -> torch.Tensor:
        """`(..., S)` token ids -> `(..., E)` L2-normalised text embeddings, `batch_size` texts at a time (a whole
        prompt bank, e.g. 31 views × 400 classes, in one batch would need activations for every text at once)."""
        batch_shape = input_ids.shape[:-1]
        ids = input_ids.reshape(-1, input_ids.shape[-1])
        mask = attention_mask.reshape(-1, attention_mask.shape[-1])
        features = torch.cat(
            [
                self.get_text_features(
                    input_ids=ids[i : i + batch_size], attention_mask=mask[i : i + batch_size]
                ).pooler_output
                for i in range(0, ids.shape[0], batch_size)
            ]
        )
        return _l2_normalize(features).view(*batch_shape, -1)

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values: torch.Tensor,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> ClaverVideoFeaturesOutput:
        """Video encoder output with `pooler_output` = video embeddings `(B, E)` and `frame_embeds` `(B, T, E)`.

        The video embedding is the mean over frames of the L2-normalised frame embeddings (docs/video-encoder.md, step 5).
        """
        vision_outputs = self.vision_model(
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            return_dict=True,
            **kwargs,
        )
        frame_embeds = _l2_normalize(self.visual_projection(vision_outputs.pooler_output))
        return ClaverVideoFeaturesOutput(
            last_hidden_state=vision_outputs.last_hidden_state,
            pooler_output=frame_embeds.mean(dim=1),
            hidden_states=vision_outputs.hidden_states,
            attentions=vision_outputs.attentions,
            temporal_hidden_states=vision_outputs.temporal_hidden_states,
            temporal_attentions=vision_outputs.temporal_attentions,
            frame_embeds=frame_embeds,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> ClaverOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(K, S)`): tokenised texts.
        pixel_values (`torch.FloatTensor` of shape `(B, T, C, H, W)`): normalised video frames.
        attention_mask (`torch.LongTensor` of shape `(K, S)`, *optional*): text padding mask.
        return_loss (`bool`, *optional*): add the symmetric contrastive loss (needs `B == K`).
        """
        if input_ids is None:
            raise ValueError(
                "`input_ids` is required: tokenised texts of shape (num_texts, sequence_length)."
            )
        vision_outputs = self.get_video_features(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        text_outputs = self.get_text_features(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs
        )
        video_embeds = vision_outputs.pooler_output
        text_embeds = _l2_normalize(text_outputs.pooler_output)

        logits_per_video = self.logit_scale.exp() * video_embeds @ text_embeds.t()
        logits_per_text = logits_per_video.t()

        loss = None
        if return_loss:
            if logits_per_video.shape[0] != logits_per_video.shape[1]:
                raise ValueError(
                    "`return_loss=True` pairs video i with text i and needs as many texts as videos, got "
                    f"{logits_per_video.shape[0]} videos and {logits_per_video.shape[1]} texts."
                )
            targets = torch.arange(len(logits_per_video), device=logits_per_video.device)
            loss = (
                F.cross_entropy(logits_per_video, targets) + F.cross_entropy(logits_per_text, targets)
            ) / 2

        return ClaverOutput(
            loss=loss,
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_text,
            video_embeds=video_embeds,
            text_embeds=text_embeds,
            frame_embeds=vision_outputs.frame_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


# Before the text bank was a module of its own, its buffers were the classifier's: `text_bank_input_ids`, ...
_LEGACY_TEXT_BANK_KEYS = {
    f"text_bank_{name}": f"text_bank.{name}" for name in ("input_ids", "attention_mask", "view_mask")
}


def _rename_legacy_text_bank_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """`load_state_dict` pre-hook: a state dict of the former layout loads into the classifier (Trainer resumes
    through `load_state_dict`)."""
    for old, new in _LEGACY_TEXT_BANK_KEYS.items():
        if prefix + old in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class ClaverForVideoClassification(ClaverPreTrainedModel):
    """CLAVER classifier over a fixed set of classes described by a stored text bank ([`ClaverTextBank`]).

    The text bank `text_bank` holds, for each of `C` classes (`config.id2label`), up to `V` tokenised text views
    (templates and interpretive prompts). It is saved with the weights, so a checkpoint classifies from video
    alone. Set or replace it with [`set_text_bank`].

    - Training: each step draws `config.num_text_views_per_step` (K) views per class at random, with
      replacement, among the class's own views; the loss is cross-entropy over classes averaged over the B·K
      (video, view) pairs, with hard `(B,)` or soft `(B, C)` labels and `config.label_smoothing`.
    - Evaluation: the scores of [`class_log_probs`]: class probabilities (softmax over classes) of every view,
      averaged over the views, and over the test views of each video when several are given. A class lacking
      view `v` takes, in view `v`, the mean of its logits over the views it has (no prompt is duplicated). The
      bank's embeddings are cached while the model is in eval mode and gradients are off, or while the text tower
      is frozen; the cache is dropped whenever the model enters training mode with a trainable text tower (fused
      optimizers update weights without bumping their version counters, which the cache is keyed on).
    """

    main_input_name = "pixel_values"
    input_modalities = ("video",)
    # The loss is already a mean over the batch: Trainer must not rescale it by `num_items_in_batch`.
    accepts_loss_kwargs = False
    text_encoding_batch_size = 1024

    def __init__(self, config: ClaverConfig):
        super().__init__(config)
        self.claver = from_config(ClaverModel, config)
        self.text_bank = ClaverTextBank(
            config.text_bank_num_views, config.num_labels, config.text_bank_max_length
        )
        self.register_load_state_dict_pre_hook(_rename_legacy_text_bank_keys)
        self.post_init()

    @classmethod
    def from_pretrained(cls, *args, **kwargs) -> "ClaverForVideoClassification":
        """`PreTrainedModel.from_pretrained`; checkpoints saved before the text bank was a module (keys
        `text_bank_*`) load too."""
        kwargs["key_mapping"] = {**_LEGACY_TEXT_BANK_KEYS, **(kwargs.get("key_mapping") or {})}
        return super().from_pretrained(*args, **kwargs)

    @classmethod
    def from_clip_pretrained(
        cls, pretrained_model_name_or_path: str, **kwargs
    ) -> "ClaverForVideoClassification":
        """See [`ClaverModel.from_clip_pretrained`]; the text bank starts empty (see [`set_text_bank`])."""
        return _from_clip_pretrained(cls, pretrained_model_name_or_path, **kwargs)

    def set_text_bank(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
        id2label: dict[int, str] | None = None,
    ) -> None:
        """Store the tokenised text views of the classes (see [`ClaverTextBank.set_views`]) and their names.

        Args:
            input_ids: `(V, C, S)` token ids, view-major.
            attention_mask: `(V, C, S)`; defaults to all ones.
            view_mask: `(V, C)` booleans, `False` where class `c` has no view `v` (its ids are ignored);
                defaults to all `True`. Every class needs at least one view.
            id2label: class names, `C` of them; defaults to the current `config.id2label` when it has `C` entries.
        """
        if input_ids.ndim == 3:  # otherwise `set_views` below names the shape it expects
            id2label = self._bank_id2label(id2label, num_classes=input_ids.shape[1])
        self.text_bank.set_views(input_ids, attention_mask, view_mask)
        self.config.id2label = {int(i): name for i, name in id2label.items()}
        self.config.label2id = {name: i for i, name in self.config.id2label.items()}
        self.config.text_bank_num_views = self.text_bank.num_views
        self.config.text_bank_max_length = self.text_bank.max_length

    def _bank_id2label(self, id2label: dict[int, str] | None, num_classes: int) -> dict[int, str]:
        if id2label is None:
            if self.config.id2label is None or len(self.config.id2label) != num_classes:
                raise ValueError(
                    f"The text bank has {num_classes} classes but config.id2label has "
                    f"{len(self.config.id2label or {})}; pass `id2label`."
                )
            return self.config.id2label
        if len(id2label) != num_classes:
            raise ValueError(
                f"`id2label` has {len(id2label)} names for a text bank of {num_classes} classes."
            )
        return id2label

    @property
    def num_classes(self) -> int:
        return self.text_bank.num_classes

    @property
    def text_encoder_frozen(self) -> bool:
        """Whether no text-tower weight is trained (`requires_grad=False`): its features can then be cached."""
        return not any(p.requires_grad for p in self.claver.text_parameters())

    def train(self, mode: bool = True) -> "ClaverForVideoClassification":
        # Fused AdamW (Trainer's default) updates parameters in place without bumping `_version`: the cache key
        # cannot see its steps, so features cached for an evaluation die when training resumes.
        if mode and not self.text_encoder_frozen:
            self.text_bank.invalidate()
        return super().train(mode)

    def _encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.claver.encode_texts(input_ids, attention_mask, self.text_encoding_batch_size)

    def bank_text_features(self) -> torch.Tensor:
        """`(V, C, E)` normalised embeddings of every view of every class.

        Cached when nothing can change them within a step: in eval mode without gradients, or whenever the text
        tower is frozen (then training reuses them too).
        """
        use_cache = self.text_encoder_frozen or (not self.training and not torch.is_grad_enabled())
        return self.text_bank.embeddings(self._encode_texts, self.claver.text_parameters(), use_cache)

    def _check_labels(self, labels: torch.Tensor, batch_size: int) -> None:
        num_classes = self.num_classes
        if labels.shape[0] != batch_size:
            raise ValueError(f"`labels` has {labels.shape[0]} rows for a batch of {batch_size} videos.")
        if labels.is_floating_point():
            if labels.shape != (batch_size, num_classes):
                raise ValueError(
                    f"Soft `labels` must have shape (batch, num_classes) = {(batch_size, num_classes)}, "
                    f"got {tuple(labels.shape)}."
                )
        elif labels.ndim != 1:
            raise ValueError(f"Hard `labels` must have shape (batch,), got {tuple(labels.shape)}.")
        elif labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"`labels` must be class indices in [0, {num_classes - 1}], got values in "
                f"[{int(labels.min())}, {int(labels.max())}]."
            )

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> ClaverVideoClassifierOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(B, T, C, H, W)`, or `(B, N, T, C, H, W)` in evaluation):
            Normalised video frames; with `N` test views per video (clips × crops), the class probabilities are
            averaged over them too.
        labels (`torch.LongTensor` of shape `(B,)` or `torch.FloatTensor` of shape `(B, C)`, *optional*):
            Class indices, or soft targets (mixup / cutmix) whose rows sum to 1.
        """
        test_views = pixel_values is not None and pixel_values.ndim == 6
        if test_views and self.training:
            raise ValueError(
                "`pixel_values` of shape (batch, test_views, frames, channels, height, width) are for evaluation: "
                "call `model.eval()`, or train on (batch, frames, channels, height, width)."
            )
        video_outputs = self.claver.get_video_features(
            pixel_values=pixel_values.flatten(0, 1) if test_views else pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **kwargs,
        )
        video_embeds = video_outputs.pooler_output  # (B·N, E) or (B, E)
        if test_views:
            video_embeds = video_embeds.unflatten(0, pixel_values.shape[:2])  # (B, N, E)
        if labels is not None:
            self._check_labels(labels, video_embeds.shape[0])
        scale = self.claver.logit_scale.exp()

        if not self.training:
            logits = class_log_probs(video_embeds, self.bank_text_features(), scale, self.text_bank.view_mask)
            loss = None if labels is None else F.cross_entropy(logits, labels)
        else:
            text_embeds = self.text_bank.sampled_embeddings(
                self._encode_texts,
                self.claver.text_parameters(),
                self.config.num_text_views_per_step,
                use_cache=self.text_encoder_frozen,
            )  # (K, C, E)
            view_logits = text_view_logits(video_embeds, text_embeds, scale)  # (B, K, C)
            logits = view_averaged_log_probs(view_logits)
            loss = None
            if labels is not None:
                targets = labels.repeat_interleave(view_logits.shape[1], dim=0)
                loss = F.cross_entropy(
                    view_logits.flatten(0, 1), targets, label_smoothing=self.config.label_smoothing
                )

        return ClaverVideoClassifierOutput(
            loss=loss, logits=logits, video_embeds=video_embeds, vision_model_output=video_outputs
        )


__all__ = [
    "ClaverForVideoClassification",
    "ClaverModel",
    "ClaverPreTrainedModel",
    "ClaverVisionModel",
]
