"""Write a small lighteval 0.9.2 (flat schema) details parquet with lighteval's own EvaluationTracker."""
import collections, sys, types
from lighteval.logging.evaluation_tracker import EvaluationTracker
from lighteval.metrics.utils.metric_utils import MetricCategory
from lighteval.models.model_output import GenerativeResponse
from lighteval.models.abstract_model import ModelInfo
from lighteval.tasks.requests import Doc

tracker = EvaluationTracker(output_dir=sys.argv[1], save_details=True)
tracker.general_config_logger.log_model_info({}, ModelInfo(model_name="org/old-reasoner"))
task_name = "custom|game24|0"
# what DetailsLogger.log reads of a LightevalTask: which metric categories it has
task = types.SimpleNamespace(has_metric_category=collections.defaultdict(bool, {MetricCategory.GENERATIVE_SAMPLING: True}))
rows = [("Use 4 6 8 8 to make 24.", "(8-6)*8+8", {"puzzle": "g24-001"},
         ["<think>8-6=2, 2*8=16, 16+8=24</think>(8-6)*8+8", "<think>6*4</think>6*4*(8/8)"],
         [[11, 12, 13, 14, 15, 16], [21, 22, 23]]),
        ("Use 1 1 1 1 to make 24.", "impossible", {"puzzle": "g24-002"},
         ["<think>1+1+1+1=4 ... no way</think>impossible", "<think>no</think>impossible"],
         [[31, 32, 33, 34, 35, 36, 37, 38], [41, 42, 43]])]
for query, gold, specific, texts, toks in rows:
    doc = Doc(query=query, choices=[gold], gold_index=0, specific=specific, task_name=task_name, ctx=f"<|user|>{query}")
    out = GenerativeResponse(result=texts, generated_tokens=toks, input_tokens=[1, 2, 3])
    tracker.details_logger.log(task_name, task, doc, [out], {"exact_match": 0.0})
tracker.metrics_logger.log(task_name, {"exact_match": 0.0})
tracker.save()

# lighteval <= 0.5 cast every value of a detail to str before writing (evaluation_tracker.save:
# Dataset.from_list([{k: str(v) for k, v in asdict(detail).items()} ...])); the same rows, written that way
from dataclasses import asdict
from datasets import Dataset
rows = [{k: str(v) for k, v in asdict(d).items()} for d in tracker.details_logger.details[task_name]]
Dataset.from_list(rows).to_parquet(sys.argv[1] + "/details_strcast.parquet")
