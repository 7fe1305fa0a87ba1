"""Fine-tune and evaluate CLAVER on a video classification dataset, in the style of the transformers examples.

    python examples/run_video_classification.py \
        --model_name_or_path openai/clip-vit-base-patch16 --dataset_dir data/ucf101 --prompt_bank ucf101 \
        --num_frames 8 --do_train --do_eval --output_dir outputs/claver-ucf101 --bf16

Multi-GPU / multi-node: `accelerate launch --num_processes N examples/run_video_classification.py ...`
(DeepSpeed and FSDP through `accelerate config`). All logic lives in `claver_hf.training`.
"""

import sys

import torch.distributed as dist
from transformers import HfArgumentParser

from claver_hf.training import ClaverTrainingArguments, DataTrainingArguments, ModelArguments, run


def main() -> None:
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, ClaverTrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(sys.argv[1])
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    run(model_args, data_args, training_args)
    if dist.is_available() and dist.is_initialized():
        # A clean shutdown of the process group: without the barrier, CPU (gloo) runs sometimes abort at exit.
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
