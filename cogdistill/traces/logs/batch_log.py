"""OpenAI Batch API output and vLLM `run_batch` output (one envelope per line:
{id, custom_id, response: {status_code, request_id, body}, error}) as logged samples.

A body is a Chat Completions object (choices[k].message: content, and `reasoning` or
`reasoning_content` where the server split the reasoning; usage.completion_tokens_details.reasoning_tokens)
or a Responses object (output items of type reasoning and message; usage.output_tokens_details.
reasoning_tokens). An error line, or a status other than 200, is a failed sample, never a zero cost.
The output file keeps no prompts (they are in the input file), so items match by custom_id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from cogdistill.traces.logs.base import (FAILED, LENGTH, STOP, HarnessLog, LogFormatError, LoggedSample,
                                         jsonl_objects, log_text, token_count)

WHAT = "OpenAI/vLLM batch output"


def read(path: Path) -> HarnessLog:
    samples: List[LoggedSample] = []
    notes: List[str] = []
    shared_usage = 0
    for n, line in jsonl_objects(path, WHAT):
        where = f"line {n}"
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise LogFormatError(f"{path}: {where} has no `custom_id` (a string): this is no {WHAT} line.")
        where = f"line {n} (custom_id '{custom_id}')"
        response, error = line.get("response"), line.get("error")
        body = response.get("body") if isinstance(response, dict) else None
        status = response.get("status_code") if isinstance(response, dict) else None
        if error or not isinstance(body, dict) or status not in (None, 200) or body.get("error"):
            reason = _error_text(error or (body or {}).get("error") or f"HTTP status {status}")
            samples.append(LoggedSample(where=where, log_id=custom_id, sample_idx=0, finish_reason=FAILED,
                                        failure=f"the batch request failed: {reason}",
                                        fields={"custom_id": custom_id}))
            continue
        if body.get("object") == "response" or "output" in body:
            samples.append(_response(path, where, custom_id, body))
        else:
            choices = _chat(path, where, custom_id, body)
            shared_usage += len(choices) > 1
            samples.extend(choices)
    if shared_usage:
        notes.append(f"{path}: {shared_usage} request(s) asked for n > 1 choices, whose usage covers all of them: "
                     "their reasoning is counted from the texts with the model's tokenizer.")
    return HarnessLog(path=path, format="openai-batch", samples=samples, notes=notes)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return " ".join(str(error.get(k)) for k in ("code", "message") if error.get(k)) or str(error)[:300]
    return str(error)[:300]


def _chat(path: Path, where: str, custom_id: str, body: Dict[str, Any]) -> List[LoggedSample]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise LogFormatError(f"{path}: {where}: the response body has no `choices`: not a chat completion.")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    details = usage.get("completion_tokens_details") if isinstance(usage.get("completion_tokens_details"), dict) else {}
    single = len(choices) == 1  # usage covers every choice: per-choice counts only for one
    reasoning_tokens = token_count(path, where, "completion_tokens_details.reasoning_tokens",
                                   details.get("reasoning_tokens"))
    output_tokens = token_count(path, where, "usage.completion_tokens", usage.get("completion_tokens"))
    prompt_tokens = token_count(path, where, "usage.prompt_tokens", usage.get("prompt_tokens"))
    out = []
    for k, choice in enumerate(choices):
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise LogFormatError(f"{path}: {where}: choice {k} has no `message`: not a chat completion.")
        reasoning = message.get("reasoning_content")  # vLLM < 0.10 and DeepSeek; `reasoning` since
        reasoning = reasoning if reasoning is not None else message.get("reasoning")
        idx = choice.get("index", k)
        out.append(LoggedSample(
            where=where if single else f"{where} choice {idx}", log_id=custom_id,
            sample_idx=token_count(path, where, "choices.index", idx) or 0, model=body.get("model"),
            reasoning_text=log_text(path, where, "message.reasoning", reasoning),
            answer_text=log_text(path, where, "message.content", message.get("content")) or "",
            reasoning_tokens=reasoning_tokens if single else None,
            output_tokens=output_tokens if single else None, prompt_tokens=prompt_tokens,
            finish_reason=LENGTH if choice.get("finish_reason") == "length" else STOP,
            fields={"custom_id": custom_id}))
    return out


def _response(path: Path, where: str, custom_id: str, body: Dict[str, Any]) -> LoggedSample:
    """A Responses-API body: reasoning items (their text, else their summary) and output_text parts."""
    reasoning: List[str] = []
    answer: List[str] = []
    for item in body.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "reasoning":
            parts = item.get("content") or item.get("summary") or []
            reasoning += [p.get("text", "") for p in parts if isinstance(p, dict)]
        elif item.get("type") == "message":
            answer += [p.get("text", "") for p in item.get("content") or []
                       if isinstance(p, dict) and p.get("type") == "output_text"]
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    details = usage.get("output_tokens_details") if isinstance(usage.get("output_tokens_details"), dict) else {}
    incomplete = body.get("status") == "incomplete"
    reason = (body.get("incomplete_details") or {}).get("reason") if incomplete else None
    return LoggedSample(
        where=where, log_id=custom_id, sample_idx=0, model=body.get("model"),
        reasoning_text=log_text(path, where, "reasoning", "\n".join(reasoning)) if reasoning else None,
        answer_text=log_text(path, where, "output_text", "".join(answer)),
        reasoning_tokens=token_count(path, where, "output_tokens_details.reasoning_tokens",
                                     details.get("reasoning_tokens")),
        output_tokens=token_count(path, where, "usage.output_tokens", usage.get("output_tokens")),
        prompt_tokens=token_count(path, where, "usage.input_tokens", usage.get("input_tokens")),
        finish_reason=LENGTH if reason in ("max_output_tokens", "max_tokens") else
        (FAILED if body.get("status") == "failed" else STOP),
        failure=_error_text(body.get("error")) if body.get("status") == "failed" else None,
        fields={"custom_id": custom_id})


