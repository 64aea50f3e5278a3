"""Each generation as an MLflow trace, linked to its job run: the Traces tab of the run (and of the
experiment) lists one trace per item x sample, with the prompt as its request, the reasoning and
the answer as its response, and the counts and outcome as span attributes and trace tags.

Why not MLflow's tracing API (mlflow.start_span, MlflowClient.start_trace)? It writes one trace at
a time through OpenTelemetry's exporter: about 70 ms per trace on a local sqlite store (measured
here), and its asynchronous queue drops traces once 1,000 exports wait. Generations are finished
records, so they are built as finished spans and written with the store's span ingestion
(`log_spans`, the path MLflow's own OTLP endpoint takes) in batches, then linked to the run
(`link_traces_to_run`). benchmarks/trace_logging.py measures what that costs a job.

Trace ids derive from (run, task, item, sample): logging a task again (a resumed run) rewrites the
same traces instead of adding copies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, Dict, List, Optional

import polars as pl

log = logging.getLogger(__name__)

BATCH_TRACES = 200  # traces per log_spans call ...
BATCH_BYTES = 8 << 20  # ... and at most about this much text (a tracking server takes one request each)
LINK_BATCH = 100  # link_traces_to_run takes at most 100 ids
# span attributes, searchable in the UI's span view; the trace tags below are filterable in the Traces tab
ATTRIBUTES = ("model", "task", "item_id", "sample_idx", "engine", "reasoning_tokens", "answer_tokens", "total_tokens",
              "prompt_tokens", "usage_reasoning_tokens", "usage_completion_tokens", "finish_reason", "censored",
              "extracted_answer", "target", "correct", "latency_s")
# each trace tag costs the store a write per trace (about 0.4 ms on sqlite): the filters a reader needs
TRACE_TAGS = ("task", "item_id", "censored", "correct")


def trace_id(run_id: str, task: str, item_id: str, sample_idx: int) -> str:
    """MLflow's trace id form (`tr-` + 32 hex digits), the same for the same generation of a run."""
    digest = hashlib.sha256(f"{run_id}\0{task}\0{item_id}\0{sample_idx}".encode()).hexdigest()
    return f"tr-{digest[:32]}"


def _record(row: Dict[str, Any]) -> Dict[str, Any]:
    """A trace row's span attributes, named as in the trace record (the server's own reasoning count,
    usage_reasoning_tokens, beside ours; null when the server reported none)."""
    return {k: row.get(k) for k in ATTRIBUTES}


def build_span(run_id: str, row: Dict[str, Any], start_ns: int):
    """One finished root span (so one trace) for one trace row."""
    from mlflow.entities import Span, SpanType
    from mlflow.tracing.constant import SpanAttributeKey, TraceTagKey
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    tid = trace_id(run_id, row["task"], row["item_id"], row["sample_idx"])
    name = f"{row['task']}/{row['item_id']}#{row['sample_idx']}"
    record = _record(row)
    attributes = {  # MLflow keeps every span attribute JSON-encoded
        SpanAttributeKey.REQUEST_ID: json.dumps(tid),
        SpanAttributeKey.SPAN_TYPE: json.dumps(SpanType.LLM),
        SpanAttributeKey.INPUTS: json.dumps({"prompt": row.get("prompt")}),
        SpanAttributeKey.OUTPUTS: json.dumps({"reasoning": row.get("reasoning_text"), "answer": row.get("answer_text")}),
        **{k: json.dumps(v) for k, v in record.items()},
    }
    if row.get("prompt_tokens") is not None and row.get("total_tokens") is not None:  # the UI's token column
        attributes[SpanAttributeKey.CHAT_USAGE] = json.dumps({
            "input_tokens": row["prompt_tokens"], "output_tokens": row["total_tokens"],
            "total_tokens": row["prompt_tokens"] + row["total_tokens"]})
    tags = {TraceTagKey.TRACE_NAME: name, **{k: _tag(record[k]) for k in TRACE_TAGS}}
    # the store makes these root-span attributes the trace's tags (as for traces sent over OTLP); it
    # JSON-decodes them, so they are encoded: "07" or "true" stay text
    attributes.update({f"{SpanAttributeKey.TRACE_TAG_PREFIX}{k}": json.dumps(v) for k, v in tags.items()})
    latency = row.get("latency_s")
    end_ns = start_ns + int(latency * 1e9) if latency is not None and latency == latency and latency > 0 else start_ns
    context = SpanContext(int(tid[3:], 16), int(hashlib.sha256(tid.encode()).hexdigest()[:16], 16), is_remote=False,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return Span(ReadableSpan(name=name, context=context, parent=None, attributes=attributes, start_time=start_ns,
                             end_time=end_ns, status=Status(StatusCode.OK), resource=Resource.get_empty())), tid


def _tag(value: Any) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _size(row: Dict[str, Any]) -> int:
    return sum(len(row.get(k) or "") for k in ("prompt", "reasoning_text", "answer_text")) + 1000


def log_generations(client, tracing, experiment_id: str, run_id: str, traces: pl.DataFrame) -> List[str]:
    """One MLflow trace per row of `traces` (a TRACE_SCHEMA frame), linked to the run; their ids.
    client: the run's MlflowClient; tracing: the store's span client (store.tracing_client)."""
    start_ns = time.time_ns()
    ids: List[str] = []
    batch: List[Any] = []
    size = 0
    for row in traces.iter_rows(named=True):
        span, tid = build_span(run_id, row, start_ns)
        batch.append(span)
        ids.append(tid)
        size += _size(row)
        if len(batch) >= BATCH_TRACES or size >= BATCH_BYTES:
            if not _send(tracing, experiment_id, batch):
                return []
            batch, size = [], 0
    if batch and not _send(tracing, experiment_id, batch):
        return []
    for start in range(0, len(ids), LINK_BATCH):
        client.link_traces_to_run(ids[start:start + LINK_BATCH], run_id)
    return ids


def _send(tracing, experiment_id: str, spans: List[Any]) -> bool:
    """False when the store cannot take spans (a tracking server older than MLflow 3.4): the job
    goes on without traces, and says so once."""
    try:
        tracing.log_spans(experiment_id, spans)
        return True
    except NotImplementedError as exc:
        log.warning("MLflow traces not logged: %s. Set tracking.log_traces=false to skip them.", exc)
        return False


def search_run_traces(client, experiment_id: str, run_id: str, filter_string: Optional[str] = None,
                      include_spans: bool = True) -> list:
    """Every trace linked to a run (all pages)."""
    out: list = []
    token = None
    while True:
        page = client.search_traces(locations=[experiment_id], run_id=run_id, filter_string=filter_string,
                                    max_results=500, page_token=token, include_spans=include_spans)
        out.extend(page)
        token = page.token
        if not token:
            return out
