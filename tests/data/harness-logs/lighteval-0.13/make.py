"""Write small lighteval 0.13 details parquets with lighteval's own EvaluationTracker."""
import sys
from lighteval.logging.evaluation_tracker import EvaluationTracker
from lighteval.models.dummy.dummy_model import DummyModelConfig
from lighteval.models.model_output import ModelResponse
from lighteval.tasks.requests import Doc, SamplingMethod

out = sys.argv[1]
tracker = EvaluationTracker(output_dir=out, save_details=True)
tracker.general_config_logger.log_model_info(DummyModelConfig(model_name="org/tiny-reasoner", seed=0))
task = "custom|game24|0"
docs = [
    ("g24-001", "Use 4 6 8 8 to make 24.", "(8-6)*8+8", ["<think>8-6=2, 2*8=16, 16+8=24</think>(8-6)*8+8",
                                                          "<think>try 6*4=24 ... then 8/8=1, 24*1</think>6*4*(8/8)"],
     [[11, 12, 13, 14, 15, 16, 17], [21, 22, 23, 24, 25]], 64),
    ("g24-002", "Use 1 1 1 1 to make 24.", "impossible", ["<think>1+1+1+1=4 ... no way", "<think>no</think>impossible"],
     [[31, 32, 33, 34, 35, 36, 37, 38, 39], [41, 42]], 9),
]
for doc_id, query, gold, texts, toks, budget in docs:
    doc = Doc(query=query, choices=[gold], gold_index=0, id=doc_id, task_name=task, num_samples=2,
              sampling_methods=[SamplingMethod.GENERATIVE], generation_size=budget, specific={"puzzle": doc_id})
    resp = ModelResponse(input=f"<|user|>{query}<|assistant|>", input_tokens=[1, 2, 3], text=texts,
                         output_tokens=toks, reasonings=[])
    tracker.details_logger.log(task, doc, resp, {"exact_match": 0.0})
# (g24-002 sample 0 used its whole budget of 9 tokens: cut off)
# an API-style response: the reasoning kept apart by the server (litellm's reasoning_content), no token ids
api = "custom|game24api|0"
doc = Doc(query="Use 3 3 8 8 to make 24.", choices=["8/(3-8/3)"], gold_index=0, id="g24-003", task_name=api,
          num_samples=1, sampling_methods=[SamplingMethod.GENERATIVE])
tracker.details_logger.log(api, doc, ModelResponse(input=[{"role": "user", "content": doc.query}],
                                                    text=["8/(3-8/3)"], reasonings=["8/3 is 2.67; 3-2.67=0.33; 8/0.33=24"]),
                           {"exact_match": 1.0})
tracker.metrics_logger.log(task, {"exact_match": 0.0})
tracker.metrics_logger.log(api, {"exact_match": 1.0})
tracker.save()
