"""Tokenizers built offline: CLIP's from OpenAI's byte-pair file (bundled with the package), and a word-level one
for models trained from scratch."""

from __future__ import annotations

import gzip
import os
from importlib import resources

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoTokenizer,
    CLIPTextConfig,
    CLIPTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from .._compat import optional_cached_file

# OpenAI's CLIP keeps the first 49,152 - 256 - 2 merges of its file; with the 256 byte symbols, their
# end-of-word forms and the two special tokens that gives the 49,408-token vocabulary.
_NUM_MERGES = 49152 - 256 - 2


# CLIP's context length (its text tower has 77 position embeddings) and vocabulary size.
CLIP_CONTEXT_LENGTH = 77
CLIP_VOCAB_SIZE = 49408


def clip_tokenizer_from_bpe(path: str | os.PathLike) -> CLIPTokenizer:
    """A `CLIPTokenizer` equal to `openai/clip-vit-*`'s, from the gzipped merges file, without the Hub."""
    lines = gzip.open(path).read().decode("utf-8").split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(vocab)}, merges=merges, model_max_length=CLIP_CONTEXT_LENGTH
    )


def clip_tokenizer() -> CLIPTokenizer:
    """CLIP's tokenizer (49,408 tokens, the one every OpenAI CLIP checkpoint uses), built offline from the byte-pair
    file shipped in `claver_hf/processing/vocab/` (MIT licence, OpenAI)."""
    with resources.as_file(
        resources.files("claver_hf.processing").joinpath("vocab", "bpe_simple_vocab_16e6.txt.gz")
    ) as path:
        return clip_tokenizer_from_bpe(path)


def word_level_tokenizer(texts: list[str], model_max_length: int = 77) -> PreTrainedTokenizerFast:
    """A small word-level tokenizer over the words of `texts`, for models trained from scratch offline
    (the synthetic demo), with CLIP's conventions: lower case, start and end tokens, the end token's id the
    largest (so it is never the legacy id 2 that CLIP's text model treats specially), padding id 0."""
    pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    words = sorted({word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(text.lower())})
    vocab = {"<pad>": 0, "<unk>": 1, **{word: i + 2 for i, word in enumerate(words)}}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[
            ("<|startoftext|>", vocab["<|startoftext|>"]),
            ("<|endoftext|>", vocab["<|endoftext|>"]),
        ],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


# Names `load_tokenizer` accepts besides a folder or Hub id.
CLIP_TOKENIZER = "clip"
WORD_LEVEL_TOKENIZER = "word-level"
# Files from which transformers builds a tokenizer; without one of them `AutoTokenizer.from_pretrained` quietly
# returns an empty tokenizer of the config's model type.
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """A tokenizer by name: `"clip"` for CLIP's bundled BPE tokenizer ([`clip_tokenizer`]), otherwise a folder or Hub
    id holding a tokenizer (through `AutoTokenizer`). A folder or repository without tokenizer files is an error,
    not an empty tokenizer."""
    if str(name_or_path) == CLIP_TOKENIZER:
        return clip_tokenizer()
    if not has_tokenizer(name_or_path):
        raise ValueError(
            f"{name_or_path} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}); give a folder or Hub id that "
            f"has one, or {CLIP_TOKENIZER!r} for CLIP's tokenizer, bundled with claver-hf."
        )
    return AutoTokenizer.from_pretrained(name_or_path)


def has_tokenizer(name_or_path: str | os.PathLike) -> bool:
    """Whether a folder or Hub repository holds tokenizer files."""
    return any(optional_cached_file(name_or_path, name) is not None for name in _TOKENIZER_FILES)


def check_tokenizer_fits(
    tokenizer: PreTrainedTokenizerBase, text_config: CLIPTextConfig, model_name: str
) -> None:
    """Raise a `ValueError` naming the mismatch when `tokenizer`'s ids cannot be what a text tower configured by
    `text_config` (of `model_name`) was trained on: ids beyond its embedding table, or an end token other than the
    one it pools (CLIP pools the hidden state at the end token). The legacy `eos_token_id` 2 of OpenAI's CLIP
    configs means pooling at the largest id of each text, right only for OpenAI's tokenizer, whose end token is
    the last of the whole vocabulary."""
    if len(tokenizer) > text_config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the text tower of {model_name} embeds "
            f"{text_config.vocab_size}: it is not that model's tokenizer."
        )
    if tokenizer.eos_token_id is None:
        raise ValueError(
            "The tokenizer has no end token: CLIP's text tower pools the hidden state at the end token."
        )
    if text_config.eos_token_id == 2:
        if (len(tokenizer), tokenizer.eos_token_id) != (text_config.vocab_size, text_config.vocab_size - 1):
            raise ValueError(
                f"The text tower of {model_name} pools at the largest token id of each text (legacy eos_token_id 2, "
                f"as in OpenAI's CLIP configs): it expects OpenAI's tokenizer, {text_config.vocab_size} tokens ending "
                f"with the end token, but the tokenizer has {len(tokenizer)} tokens and its end token "
                f"{tokenizer.eos_token!r} is id {tokenizer.eos_token_id}: it is not that model's tokenizer."
            )
    elif tokenizer.eos_token_id != text_config.eos_token_id:
        raise ValueError(
            f"The text tower of {model_name} pools at token id {text_config.eos_token_id} (text_config.eos_token_id) but "
            f"the tokenizer ends texts with {tokenizer.eos_token!r} = {tokenizer.eos_token_id}: it is not that model's "
            "tokenizer."
        )
