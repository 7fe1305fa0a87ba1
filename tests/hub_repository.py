"""A miniature `openai/clip-vit-base-patch16`, written at test time: the Hub repository's files and their schemas,
CLIP's real tokenizer (from the vocabulary bundled with claver-hf), tiny random weights.

The Hub repository holds config.json (written by transformers 4.x: every legacy generation field in the sub-configs,
`text_config_dict` / `vision_config_dict`, CLIP's legacy `eos_token_id` 2, which makes the text tower pool at the
largest token id), the tokenizer as vocab.json + merges.txt + tokenizer.json + tokenizer_config.json +
special_tokens_map.json, preprocessor_config.json of the old `CLIPFeatureExtractor` (sizes as plain ints), and
model.safetensors with the position-id buffers old checkpoints carried. Everything here follows that layout;
only the widths and depths are tiny, so the real loading code runs against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

from claver_hf.processing.tokenization import CLIP_CONTEXT_LENGTH, CLIP_VOCAB_SIZE, clip_tokenizer

REPOSITORY_FILES = (
    "config.json",
    "merges.txt",
    "model.safetensors",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
)
IMAGE_SIZE = 32
PATCH_SIZE = 16

# The generation and bookkeeping fields transformers 4.x wrote into every sub-config of the Hub's CLIP configs.
_LEGACY_FIELDS = {
    "_name_or_path": "", "add_cross_attention": False, "architectures": None, "bad_words_ids": None,
    "chunk_size_feed_forward": 0, "cross_attention_hidden_size": None, "decoder_start_token_id": None,
    "diversity_penalty": 0.0, "do_sample": False, "early_stopping": False, "encoder_no_repeat_ngram_size": 0,
    "finetuning_task": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
    "id2label": {"0": "LABEL_0", "1": "LABEL_1"}, "is_decoder": False, "is_encoder_decoder": False,
    "label2id": {"LABEL_0": 0, "LABEL_1": 1}, "length_penalty": 1.0, "max_length": 20, "min_length": 0,
    "no_repeat_ngram_size": 0, "num_beam_groups": 1, "num_beams": 1, "num_return_sequences": 1,
    "output_attentions": False, "output_hidden_states": False, "output_scores": False, "prefix": None,
    "problem_type": None, "pruned_heads": {}, "remove_invalid_values": False, "repetition_penalty": 1.0,
    "return_dict": True, "return_dict_in_generate": False, "sep_token_id": None, "task_specific_params": None,
    "temperature": 1.0, "tie_encoder_decoder": False, "tie_word_embeddings": True, "tokenizer_class": None,
    "top_k": 50, "top_p": 1.0, "torch_dtype": None, "torchscript": False, "transformers_version": "4.16.0.dev0",
    "use_bfloat16": False,
}  # fmt: skip

_SPECIAL = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": True}


def clip_config_json(image_size: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE) -> dict:
    """config.json of the miniature repository: the Hub file's keys and legacy values, tiny sizes."""
    common = {"attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "initializer_factor": 1.0,
              "initializer_range": 0.02, "layer_norm_eps": 1e-05, "projection_dim": 16}  # fmt: skip
    text = {
        **_LEGACY_FIELDS, **common, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
        "hidden_size": 32, "intermediate_size": 64, "max_position_embeddings": CLIP_CONTEXT_LENGTH,
        "model_type": "clip_text_model", "num_attention_heads": 4, "num_hidden_layers": 2,
        "vocab_size": CLIP_VOCAB_SIZE,
    }  # fmt: skip
    vision = {
        **_LEGACY_FIELDS, **common, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None,
        "hidden_size": 32, "image_size": image_size, "intermediate_size": 64, "model_type": "clip_vision_model",
        "num_attention_heads": 4, "num_hidden_layers": 3, "patch_size": patch_size,
    }  # fmt: skip
    return {
        "_name_or_path": "openai/clip-vit-base-patch16",
        "architectures": ["CLIPModel"],
        "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592,
        "model_type": "clip",
        "projection_dim": 16,
        "text_config": dict(sorted(text.items())),
        "text_config_dict": None,
        "transformers_version": None,
        "vision_config": dict(sorted(vision.items())),
        "vision_config_dict": None,
    }


def write_clip_repository(
    path: str | Path, *, image_size: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE, seed: int = 0
) -> Path:
    """Write the miniature repository to `path` and return it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = clip_config_json(image_size, patch_size)
    (path / "config.json").write_text(json.dumps(config, indent=2))

    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig.from_dict(config)).eval()
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    for tower in ("text_model", "vision_model"):  # persistent buffers in the checkpoints of that time
        weights[f"{tower}.embeddings.position_ids"] = getattr(model, tower).embeddings.position_ids.clone()
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})

    tokenizer = clip_tokenizer()
    tokenizer.save_pretrained(path)  # tokenizer.json (and a tokenizer_config.json replaced below)
    (path / "vocab.json").write_text(json.dumps(tokenizer.get_vocab(), ensure_ascii=False))
    merges = json.loads((path / "tokenizer.json").read_text())["model"]["merges"]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in merges]
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    start = {"content": "<|startoftext|>", **_SPECIAL}
    end = {"content": "<|endoftext|>", **_SPECIAL}
    (path / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": start, "eos_token": end, "unk_token": end, "pad_token": "<|endoftext|>"})
    )
    added = {"__type": "AddedToken"}
    tokenizer_config = {
        "unk_token": {**end, **added}, "bos_token": {**start, **added}, "eos_token": {**end, **added},
        "pad_token": "<|endoftext|>", "add_prefix_space": False, "errors": "replace", "do_lower_case": True,
        "name_or_path": "openai/clip-vit-base-patch16", "model_max_length": CLIP_CONTEXT_LENGTH,
        "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
    }  # fmt: skip
    (path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    preprocessor = {
        "crop_size": image_size, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": image_size,
    }  # fmt: skip
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    assert sorted(p.name for p in path.iterdir()) == sorted(REPOSITORY_FILES)
    return path
