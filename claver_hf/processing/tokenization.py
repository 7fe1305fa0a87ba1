"""Tokenizers built offline: CLIP's from OpenAI's byte-pair file, and a word-level one for models trained from
scratch."""

from __future__ import annotations

import gzip
import os

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import CLIPTokenizer, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

# OpenAI's CLIP keeps the first 49,152 - 256 - 2 merges of its file; with the 256 byte symbols, their
# end-of-word forms and the two special tokens that gives the 49,408-token vocabulary.
_NUM_MERGES = 49152 - 256 - 2


def clip_tokenizer_from_bpe(path: str | os.PathLike) -> CLIPTokenizer:
    """A `CLIPTokenizer` equal to `openai/clip-vit-*`'s, from the gzipped merges file, without the Hub."""
    lines = gzip.open(path).read().decode("utf-8").split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: i for i, token in enumerate(vocab)}, merges=merges)


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
