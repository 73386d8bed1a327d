"""Inference engines: one interface over PyTorch, ONNX Runtime and TensorRT for the three model stages."""
