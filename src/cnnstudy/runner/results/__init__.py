"""What a finished run leaves behind and how it is read back: its artefacts and metrics.json
(artifacts), the folder read as a record (records), k-fold folds pooled into one run (folds)."""
