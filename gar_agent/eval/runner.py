"""The evaluation harness's older import path: `store` (the folder), `execute` (running), `score` (metrics)."""

from gar_agent.eval.execute import GT_COLOR, EvalJob, SampleCrash, evaluate_sample, run_samples
from gar_agent.eval.score import Rescored, metrics_document, rescore, score_result, write_metrics
from gar_agent.eval.store import (
    FORMAT,
    EvalDir,
    SettingsMismatch,
    check_folder,
    clean_partial_writes,
    eval_config,
    load_scores,
    read_config,
    read_sample,
    sample_document,
    split_done,
    store_config,
)

__all__ = [
    "FORMAT",
    "GT_COLOR",
    "EvalDir",
    "EvalJob",
    "Rescored",
    "SampleCrash",
    "SettingsMismatch",
    "check_folder",
    "clean_partial_writes",
    "eval_config",
    "evaluate_sample",
    "load_scores",
    "metrics_document",
    "read_config",
    "read_sample",
    "rescore",
    "run_samples",
    "sample_document",
    "score_result",
    "split_done",
    "store_config",
    "write_metrics",
]
