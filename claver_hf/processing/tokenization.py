"""CLIP's tokenizer built offline from OpenAI's byte-pair file (`bpe_simple_vocab_16e6.txt.gz`)."""

from __future__ import annotations

import gzip
import os

from transformers import CLIPTokenizer
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
