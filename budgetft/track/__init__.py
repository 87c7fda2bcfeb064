"""Results where ML users already look: TensorBoard event files, MLflow and W&B runs.

    tensorboard     every trial's curves (from its worker) and the run's summary, always, in
                    RUN/tensorboard (tensorboardX, which Ray Tune installs)
    mlflow_backend  --track mlflow[=URI]: one MLflow run per budgetft run, one nested per trial
    wandb_backend   --track wandb[=PROJECT]: a W&B group of runs (the run, then each trial)
    choice          --track parsed, and each tracker checked before anything is spent
    outbox          every call on a background thread, with a timeout: dropped and noted when
                    slow or failing, never retried, never in a paid step
    trackers        the command's backends, each behind its own outbox
    follow          the driver passes on what the trials' workers wrote (trial.json, events)
    events          reading scalars back out of event files as they grow
    run_tracking    a run's tracking from the session's start to its report (RUN/tracking.json)
    train_tracking  `budgetft train --track`
    summary, spend, facts   what is sent: the run's results, its spend, the metric names

Nothing here imports mlflow, wandb or tensorboardX at module level (the extras are optional and
heavy); `budgetft --help` loads none of it.
"""
