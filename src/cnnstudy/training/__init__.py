"""The training loop and what it runs on: engine (train_one_epoch, evaluate, fit), devices and
precision, torchrun ranks (distributed), process settings (runtime), scores (metrics)."""
