"""The text bank of a CLAVER classifier: the tokenised text views of its classes and their cached embeddings.

Shapes: `V` views per class at most, `C` classes, `S` tokens, `K` views drawn per class, `E` embedding size.
"""

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._compat import tensor_version

TextEncoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""`(..., S)` token ids and attention mask -> `(..., E)` normalised text embeddings."""


class ClaverTextBank(nn.Module):
    """Up to `V` tokenised text views (templates and interpretive prompts) for each of `C` classes.

    Buffers, saved with the model that owns the bank:

    - `input_ids`, `attention_mask` `(V, C, S)`: view `v` of class `c`, view-major;
    - `view_mask` `(V, C)`: `False` where class `c` has no view `v` (classes may have different numbers of
      views; the ids of a missing view are ignored).

    Interface: [`set_views`] stores new views, [`embeddings`] encodes all of them (cached on request),
    [`sample_views`] draws `K` views per class for a training step, [`invalidate`] drops the cache.

    The cache is keyed on the storage and in-place version of every weight the encoder depends on (passed to
    [`embeddings`]) and of the token buffers, so in-place weight updates, `load_state_dict` and device moves
    make it miss. Fused optimizers update weights without bumping their version: whoever trains the encoder
    must call [`invalidate`] before its weights change (the classifier does so on entering training mode).

    Args:
        num_views, num_classes, max_length: buffer sizes, so that a saved bank loads into a new model; a bank
            with no view (`num_views = 0`) is empty until [`set_views`].
    """

    def __init__(self, num_views: int = 0, num_classes: int = 0, max_length: int = 77):
        super().__init__()
        shape = (num_views, num_classes, max_length)
        self.register_buffer("input_ids", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("attention_mask", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("view_mask", torch.zeros(shape[:2], dtype=torch.bool))
        self._cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def num_views(self) -> int:
        return self.view_mask.shape[0]

    @property
    def num_classes(self) -> int:
        return self.view_mask.shape[1]

    @property
    def max_length(self) -> int:
        return self.input_ids.shape[2]

    @property
    def is_complete(self) -> bool:
        """Whether every class has at least one view (a new bank has none)."""
        return self.view_mask.numel() > 0 and bool(self.view_mask.any(dim=0).all())

    def set_views(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        view_mask: torch.Tensor | None = None,
    ) -> None:
        """Replace the views (on the device of the current buffers) and drop the cached embeddings.

        Args:
            input_ids: `(V, C, S)` token ids, view-major.
            attention_mask: `(V, C, S)`; defaults to all ones.
            view_mask: `(V, C)` booleans, `False` where class `c` has no view `v`; defaults to all `True`. Every
                class needs at least one view.
        """
        if input_ids.ndim != 3:
            raise ValueError(
                "`input_ids` of a text bank must have shape (views, classes, sequence_length), got "
                f"{tuple(input_ids.shape)}."
            )
        num_views, num_classes, _ = input_ids.shape
        if num_views == 0 or num_classes == 0:
            raise ValueError(
                f"A text bank needs at least one view and one class, got shape {tuple(input_ids.shape)}."
            )
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        view_mask = (
            torch.ones(num_views, num_classes, dtype=torch.bool) if view_mask is None else view_mask.bool()
        )
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"`attention_mask` shape {tuple(attention_mask.shape)} must equal `input_ids` shape "
                f"{tuple(input_ids.shape)}."
            )
        if view_mask.shape != (num_views, num_classes):
            raise ValueError(
                f"`view_mask` must have shape {(num_views, num_classes)}, got {tuple(view_mask.shape)}."
            )
        empty = (~view_mask.any(dim=0)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"Classes {empty} have no text view in `view_mask`.")
        device = self.input_ids.device
        self.input_ids = input_ids.to(device=device, dtype=torch.long)
        self.attention_mask = attention_mask.to(device=device, dtype=torch.long)
        self.view_mask = view_mask.to(device)
        self.invalidate()

    def invalidate(self) -> None:
        """Drop the cached embeddings: the next [`embeddings`] call encodes the bank again."""
        self._cache = None

    def _require_complete(self) -> None:
        if not self.is_complete:
            raise ValueError(
                "This model has no complete text bank: call `set_text_bank(...)` (or load a checkpoint that has "
                "one) before classifying."
            )

    def _cache_key(self, weights: Sequence[torch.Tensor]) -> tuple:
        tensors = [*weights, self.input_ids, self.attention_mask]
        return tuple((t.data_ptr(), tensor_version(t), t.dtype, t.device) for t in tensors)

    def embeddings(
        self, encode: TextEncoder, weights: Sequence[torch.Tensor], use_cache: bool = False
    ) -> torch.Tensor:
        """`(V, C, E)` normalised embeddings of every view of every class (missing views included: mask them
        with `view_mask`).

        Args:
            encode: the text encoder.
            weights: every tensor `encode` depends on; the cache is keyed on them.
            use_cache: reuse (or store) the cached embeddings, computed without gradients. Only when nothing
                can change the weights until the next call without a new key or an [`invalidate`]: not while
                the encoder trains.
        """
        self._require_complete()
        if not use_cache:
            self.invalidate()
            return encode(self.input_ids, self.attention_mask)
        key = self._cache_key(weights)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, encode(self.input_ids, self.attention_mask))
        return self._cache[1]

    def sampled_embeddings(
        self, encode: TextEncoder, weights: Sequence[torch.Tensor], num_samples: int, use_cache: bool = False
    ) -> torch.Tensor:
        """`(K, C, E)` embeddings of `num_samples` (K) views per class drawn by [`sample_views`]: picked from the
        cached embeddings of the whole bank with `use_cache` (a frozen encoder), otherwise only those `K·C` texts
        are encoded."""
        views, classes = self.sample_views(num_samples)
        if use_cache:
            return self.embeddings(encode, weights, use_cache=True)[views, classes]
        return encode(self.input_ids[views, classes], self.attention_mask[views, classes])

    def sample_views(self, num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `num_samples` (K) views per class among the class's own views, at random with replacement.

        Returns:
            View and class indices, each `(K, C)`: `input_ids[views, classes]` is `(K, C, S)`.
        """
        self._require_complete()
        weights = self.view_mask.t().float()  # (C, V)
        views = torch.multinomial(weights, num_samples, replacement=True).t()  # (K, C)
        classes = torch.arange(self.num_classes, device=views.device).expand_as(views)
        return views, classes


__all__ = ["ClaverTextBank", "TextEncoder"]
