"""Write a small HELM run folder with HELM's own dataclasses and the serialisation helm-run uses
(runner.py: json.dumps(asdict_without_nones(...), indent=2))."""
import json, os, sys
from helm.benchmark.adaptation.adapter_spec import AdapterSpec
from helm.benchmark.adaptation.request_state import RequestState
from helm.benchmark.adaptation.scenario_state import ScenarioState
from helm.benchmark.augmentations.perturbation_description import PerturbationDescription
from helm.benchmark.metrics.metric import PerInstanceStats
from helm.benchmark.metrics.metric_name import MetricName
from helm.benchmark.metrics.statistic import Stat
from helm.benchmark.runner import remove_per_instance_stats_nans
from helm.benchmark.scenarios.scenario import Input, Instance, Output, Reference, CORRECT_TAG
from helm.common.general import asdict_without_nones, write
from helm.common.request import GeneratedOutput, Request, RequestResult, Thinking, Token

run = sys.argv[1]
os.makedirs(run, exist_ok=True)
model = "openai/tiny-reasoner"
spec = AdapterSpec(method="generation", model=model, model_deployment=model, max_tokens=8, num_train_trials=2)

def inst(iid, text, target, perturbation=None):
    return Instance(input=Input(text=text), references=[Reference(Output(text=target), tags=[CORRECT_TAG])],
                    split="test", id=iid, perturbation=perturbation)

def state(instance, trial, prompt, result):
    req = Request(model=model, model_deployment=model, prompt=prompt, max_tokens=8)
    return RequestState(instance=instance, reference_index=None, request_mode=None, train_trial_index=trial,
                        output_mapping=None, request=req, result=result, num_train_instances=0, prompt_truncated=False)

def ok(text, ntok, reason, thinking=None):
    toks = [Token(text=f"t{i}", logprob=-0.1) for i in range(ntok)]
    return RequestResult(success=True, embedding=[], cached=False, request_time=0.5,
                         completions=[GeneratedOutput(text=text, logprob=-0.1 * ntok, tokens=toks,
                                                      finish_reason={"reason": reason},
                                                      thinking=Thinking(text=thinking) if thinking else None)])

i4, i7, i9 = inst("id4", "Use 4 6 8 8 to make 24.", "(8-6)*8+8"), inst("id7", "Use 3 3 8 8 to make 24.", "8/(3-8/3)"), \
    inst("id9", "Use 1 2 3 4 to make 24.", "1*2*3*4")
i4typo = inst("id4", "Use 4 6 8 8 to mkae 24.", "(8-6)*8+8", PerturbationDescription(name="typos", robustness=True))
states = [
    state(i4, 0, "Q: Use 4 6 8 8 to make 24.\nA:", ok("<think>8-6=2</think>(8-6)*8+8", 6, "stop")),
    state(i4, 1, "Q: Use 4 6 8 8 to make 24.\nA:", ok("<think>8+8=16</think>(8-6)*8+8", 7, "stop")),
    state(i7, 0, "Q: Use 3 3 8 8 to make 24.\nA:", ok("8/(3-8", 8, "length", thinking="8/3 then 3-8/3 then 8 over it")),
    state(i7, 1, "Q: Use 3 3 8 8 to make 24.\nA:", ok("8/(3-8/3)", 5, "stop", thinking="divide")),
    state(i9, 0, "Q: Use 1 2 3 4 to make 24.\nA:",
          RequestResult(success=False, embedding=[], completions=[], cached=False, error="OpenAI error: rate limited")),
    state(i4typo, 0, "Q: Use 4 6 8 8 to mkae 24.\nA:", ok("(8-6)*8+8", 4, "stop")),
]
write(os.path.join(run, "scenario_state.json"),
      json.dumps(asdict_without_nones(ScenarioState(adapter_spec=spec, request_states=states)), indent=2))
per_instance = []
for s in states:
    if s.result is None or not s.result.success:
        continue
    n = sum(len(c.tokens) for c in s.result.completions)
    per_instance.append(PerInstanceStats(instance_id=s.instance.id, perturbation=s.instance.perturbation,
                                         train_trial_index=s.train_trial_index,
                                         stats=[Stat(MetricName("num_output_tokens")).add(n),
                                                Stat(MetricName("exact_match", split="test")).add(1.0)]))
write(os.path.join(run, "per_instance_stats.json"),
      json.dumps(list(map(asdict_without_nones, remove_per_instance_stats_nans(per_instance))), indent=2))
