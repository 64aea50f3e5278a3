"""The MLflow run of one training run: params, loss curves (a TrainerCallback), the dataset as an
MLflow input, the adapter as an artifact. It sits in the study's experiment beside the job runs,
tagged `cogdistill.kind=train` (reports read only `job` runs); the evaluation runs of the model it
registers carry `trained_by=<this run's id>`.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import polars as pl

from cogdistill.config.schema import Config
from cogdistill.tracking import run_format as rf
from cogdistill.tracking.store import _client, artifact_root, ensure_experiment, experiment_name


class TrainRun:
    def __init__(self, job: Config, tags: Dict[str, str], run_name: str):
        self.enabled = job.tracking.enabled
        self.run_id: Optional[str] = None
        self.client = self.experiment_id = None
        if not self.enabled:
            return
        self.client, self.uri = _client(job.tracking)
        self.experiment_id = ensure_experiment(self.client, experiment_name(job.tracking, job.study),
                                               artifact_root(job.tracking, self.uri))
        self.run_id = self.client.create_run(self.experiment_id, run_name=run_name,
                                             tags={**tags, **rf.kind_tags(rf.Kind.TRAIN)}).info.run_id

    def log_params(self, params: Dict[str, Any]) -> None:
        if self.enabled:
            from mlflow.entities import Param

            self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])

    def set_tags(self, tags: Dict[str, str]) -> None:
        for key, value in tags.items():
            if self.enabled:
                self.client.set_tag(self.run_id, key, value)

    def log_metrics(self, metrics: Dict[str, Any], step: int) -> None:
        if self.enabled:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
            if batch:
                self.client.log_batch(self.run_id, metrics=batch)

    def log_dataset(self, frame: pl.DataFrame, path: Path, name: str) -> None:
        """The training set as an MLflow dataset input (schema, digest, row count) and as a file."""
        if not self.enabled:
            return
        from mlflow.data.polars_dataset import from_polars
        from mlflow.entities import DatasetInput, InputTag

        self.client.log_artifact(self.run_id, str(path), rf.TRAIN_DATASET_DIR)
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/{rf.TRAIN_DATASET_DIR}/{path.name}"
        with warnings.catch_warnings():  # MLflow registers its file source twice and says so
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            dataset = from_polars(frame, source=source, name=name)
        self.client.log_inputs(self.run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                                          [InputTag("mlflow.data.context", rf.TRAINING_CONTEXT)])])

    def log_folder(self, folder: Path, artifact_path: str) -> None:
        if self.enabled:
            self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id:
            self.client.set_terminated(self.run_id, status=status)


def loss_callback(run: TrainRun):
    """A transformers TrainerCallback that sends every logged number (loss, grad_norm, learning_rate,
    GRPO rewards...) to our store as `train/<name>` at the optimizer step: the loss curves."""
    from transformers import TrainerCallback

    class MlflowLossCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            run.log_metrics({rf.train_metric(k): v for k, v in (logs or {}).items()}, step=state.global_step)

    return MlflowLossCallback()
