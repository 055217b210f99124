"""Models by name (registry: create_model, each model's facts), the seed CNNs (cnn), freezing,
pretrained weights made present before training, checkpoints."""
