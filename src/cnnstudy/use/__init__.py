"""What uses the runner from outside: finished runs put to use (load_run and predict, ONNX/TorchScript
export, Grad-CAM), and `cnnstudy init`'s scaffold, which writes a study file sized by a measured budget."""
