"""The one training loop that every task shares, in parts that each read in one sitting:

    settings       the loop's configuration keys; resolving and checking a run's configuration
    loop           `fit`: build, restore, step, evaluate, checkpoint, finish
    checkpoints    run folders, checkpoints, RNG states (exact resume)
    distributed    torchrun's process group and the checks that keep processes in step
    optim          optimizer, learning-rate schedule, moving average of the weights
    log            metrics.jsonl, TensorBoard, the progress bar

    pillars train TASK                                   # one process
    torchrun --nproc_per_node=N -m pillars train TASK    # DistributedDataParallel

Runs are started, reused, resumed and loaded through pillars.runs.
"""
from pillars.devices import autocast, machine_name, resolve_device
from pillars.train.checkpoints import (WriteError, new_run_dir, rng_state, save_checkpoint, seed_everything,
                                       set_rng_state, written)
from pillars.train.distributed import Proc, all_reduce_sums, check_in_step, init_process
from pillars.train.loop import NonFiniteLoss, StopRequested, evaluate_job, fit
from pillars.train.optim import lr_at, make_optimizer
from pillars.train.settings import TRAINING_ONLY, TrainConfig, check_config, default_config, resolve_config
from pillars.weights import checkpoints, load_weights, save_weights, weights_path

__all__ = ["TRAINING_ONLY", "autocast", "machine_name", "resolve_device", "WriteError", "new_run_dir", "rng_state", "save_checkpoint",
           "seed_everything", "set_rng_state", "Proc", "all_reduce_sums", "check_in_step", "init_process",
           "NonFiniteLoss", "StopRequested", "evaluate_job", "fit", "lr_at", "make_optimizer", "TrainConfig",
           "check_config", "default_config", "resolve_config", "checkpoints", "load_weights", "save_weights",
           "weights_path", "written"]
