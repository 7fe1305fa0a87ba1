"""Top-k accuracy as an `evaluate` metric module, shipped inside claver-hf so it loads offline:
`evaluate.load(claver_hf.training.metrics.TOP_K_ACCURACY_PATH)`."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Top-k accuracy: the fraction of examples whose label is among the k highest-scored classes."
_KWARGS_DESCRIPTION = """
Args:
    predictions: class scores, shape (N, C) (logits or probabilities).
    references: class indices, shape (N,).
    k: one k or a list of k values (default [1, 5]); k larger than C counts every example as correct.
Returns:
    {"top_1_accuracy": float, "top_5_accuracy": float, ...}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, k=(1, 5)):
        scores = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        ranks = np.argsort(-scores, axis=1)
        ks = [k] if isinstance(k, int) else list(k)
        return {f"top_{n}_accuracy": float((ranks[:, :n] == labels[:, None]).any(axis=1).mean()) for n in ks}
