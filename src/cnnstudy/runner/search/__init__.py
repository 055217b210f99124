"""The search: a run's `sweep:` expanded into trials and confirmed (sweep), Optuna's sampler,
pruner and storage (trials)."""
