"""`ClaverTextBank` on its own (a toy encoder), and the checkpoints of the classifier that holds one."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForVideoClassification

from claver_hf import ClaverForVideoClassification
from claver_hf.modeling import ClaverTextBank

from .conftest import random_text, random_video, tiny_claver_config


class ToyEncoder:
    """Mean of token embeddings over the attention mask, normalised; counts the texts it encodes."""

    def __init__(self):
        self.embedding = nn.Embedding(64, 8)
        self.encoded: list[int] = []

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.encoded.append(input_ids[..., 0].numel())
        mask = attention_mask[..., None].float()
        return F.normalize((self.embedding(input_ids) * mask).sum(-2) / mask.sum(-2), dim=-1)

    @property
    def weights(self) -> list[torch.Tensor]:
        return [self.embedding.weight]


def bank(num_views: int = 3, num_classes: int = 4, view_mask: torch.Tensor | None = None) -> ClaverTextBank:
    text = random_text(num_views * num_classes, generator=torch.Generator().manual_seed(0))
    text_bank = ClaverTextBank()
    text_bank.set_views(
        text["input_ids"].view(num_views, num_classes, -1),
        text["attention_mask"].view(num_views, num_classes, -1),
        view_mask,
    )
    return text_bank


def test_set_views_stores_and_checks_shapes():
    text_bank = bank(view_mask=torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1]]))
    assert (text_bank.num_views, text_bank.num_classes, text_bank.max_length) == (3, 4, 8)
    assert text_bank.is_complete and text_bank.view_mask.dtype == torch.bool
    assert set(text_bank.state_dict()) == {"input_ids", "attention_mask", "view_mask"}
    ones = ClaverTextBank()
    ones.set_views(torch.ones(2, 3, 4, dtype=torch.long))
    assert bool(ones.attention_mask.eq(1).all()) and bool(ones.view_mask.all())

    with pytest.raises(ValueError, match=r"shape \(views, classes, sequence_length\), got \(6, 4\)"):
        ones.set_views(torch.ones(6, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one view and one class"):
        ones.set_views(torch.ones(0, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`attention_mask` shape \(2, 3, 5\) must equal"):
        ones.set_views(torch.ones(2, 3, 4, dtype=torch.long), torch.ones(2, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`view_mask` must have shape \(2, 3\)"):
        ones.set_views(torch.ones(2, 3, 4, dtype=torch.long), view_mask=torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"Classes \[1\] have no text view"):
        ones.set_views(torch.ones(2, 3, 4, dtype=torch.long), view_mask=torch.tensor([[1, 0, 1], [1, 0, 1]]))


def test_an_empty_bank_refuses_to_embed_or_sample():
    empty = ClaverTextBank(num_views=0, num_classes=3)
    assert not empty.is_complete
    with pytest.raises(ValueError, match="no complete text bank"):
        empty.embeddings(ToyEncoder(), [])
    with pytest.raises(ValueError, match="no complete text bank"):
        empty.sample_views(2)


def test_embeddings_are_cached_until_weights_or_views_change():
    text_bank, encoder = bank(), ToyEncoder()
    first = text_bank.embeddings(encoder, encoder.weights, use_cache=True)
    assert first.shape == (3, 4, 8) and not first.requires_grad
    assert text_bank.embeddings(encoder, encoder.weights, use_cache=True) is first
    assert encoder.encoded == [12]

    with torch.no_grad():
        encoder.embedding.weight.mul_(2.0)  # in place, as an optimizer step: the version counter moves
    text_bank.embeddings(encoder, encoder.weights, use_cache=True)
    assert len(encoder.encoded) == 2

    text_bank.load_state_dict(bank(num_views=3).state_dict())  # buffers copied in place
    text_bank.embeddings(encoder, encoder.weights, use_cache=True)
    assert len(encoder.encoded) == 3

    text_bank.invalidate()  # what a fused optimizer step needs: its updates bump no version
    text_bank.embeddings(encoder, encoder.weights, use_cache=True)
    assert len(encoder.encoded) == 4

    # Without the cache the embeddings are encoded every time (with gradients), and any cached ones dropped.
    assert text_bank.embeddings(encoder, encoder.weights).requires_grad
    text_bank.embeddings(encoder, encoder.weights, use_cache=True)
    assert len(encoder.encoded) == 6


def test_sampling_draws_only_a_class_own_views():
    view_mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 1]]).bool()
    text_bank = bank(view_mask=view_mask)
    views, classes = text_bank.sample_views(300)
    assert views.shape == classes.shape == (300, 4)
    assert torch.equal(classes, torch.arange(4).expand(300, 4))
    assert bool(view_mask[views, classes].all())
    assert [set(views[:, c].tolist()) for c in range(4)] == [{0, 1}, {0}, {0, 1, 2}, {0, 1, 2}]


def test_sampled_embeddings_encode_only_the_sample_or_pick_from_the_cache():
    text_bank, encoder = bank(), ToyEncoder()
    torch.manual_seed(0)
    views, classes = text_bank.sample_views(2)
    torch.manual_seed(0)
    fresh = text_bank.sampled_embeddings(encoder, encoder.weights, 2)
    assert fresh.shape == (2, 4, 8) and encoder.encoded == [2 * 4]  # K views x C classes, not the bank
    torch.manual_seed(0)
    picked = text_bank.sampled_embeddings(encoder, encoder.weights, 2, use_cache=True)
    assert encoder.encoded == [8, 12]  # the whole bank once, for the cache
    torch.testing.assert_close(picked, fresh)
    torch.testing.assert_close(picked, text_bank.embeddings(encoder, encoder.weights, True)[views, classes])


# ---------------------------------------------------------------- in the classifier's checkpoints


def classifier() -> ClaverForVideoClassification:
    config = tiny_claver_config()
    config.id2label = {0: "waving", 1: "jumping", 2: "clapping"}
    model = ClaverForVideoClassification(config)
    text = random_text(6, generator=torch.Generator().manual_seed(1))
    model.set_text_bank(text["input_ids"].view(2, 3, -1), text["attention_mask"].view(2, 3, -1))
    return model.eval()


def test_checkpoints_of_the_former_layout_still_load(tmp_path):
    """Before the text bank had its own module its buffers were the classifier's (`text_bank_input_ids`, ...)."""
    model = classifier()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    assert {"text_bank.input_ids", "text_bank.attention_mask", "text_bank.view_mask"} <= set(weights)
    old = {key.replace("text_bank.", "text_bank_"): tensor for key, tensor in weights.items()}
    save_file(old, tmp_path / "model.safetensors", metadata={"format": "pt"})

    video = random_video(1)
    with torch.no_grad():
        expected = model(pixel_values=video).logits
    for loader in (ClaverForVideoClassification, AutoModelForVideoClassification):
        loaded, info = loader.from_pretrained(tmp_path, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        assert torch.equal(loaded.text_bank.input_ids, model.text_bank.input_ids)
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(pixel_values=video).logits, expected)
    # Saved again (transformers keeps a renamed checkpoint's layout), it loads again.
    loaded.save_pretrained(tmp_path / "again")
    again = ClaverForVideoClassification.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=video).logits, expected)

    # Trainer resumes through `load_state_dict`.
    fresh = ClaverForVideoClassification(model.config)
    result = fresh.load_state_dict(old)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(fresh.text_bank.view_mask, model.text_bank.view_mask)
