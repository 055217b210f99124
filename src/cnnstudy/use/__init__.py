"""Finished runs put to use: load_run and predict (inference), ONNX/TorchScript export."""
