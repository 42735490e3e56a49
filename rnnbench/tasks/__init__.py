"""Synthetic tasks from the PRU paper (adding, memorisation, copy): data and training.

``rnnbench task`` trains cells on them; data comes from the seed, nothing is downloaded.
"""

from rnnbench.tasks.data import ADDING_TRIVIAL_MSE, TASKS, TaskSpec, adding_batch, symbol_batch
from rnnbench.tasks.train import (
    Run,
    TaskModel,
    TrainConfig,
    TrainResult,
    load_suite,
    match_hidden_size,
    plan_runs,
    recurrent_params,
    run_case,
    train,
)

__all__ = ["ADDING_TRIVIAL_MSE", "TASKS", "Run", "TaskModel", "TaskSpec", "TrainConfig",
           "TrainResult", "adding_batch", "load_suite", "match_hidden_size", "plan_runs",
           "recurrent_params", "run_case", "symbol_batch", "train"]
