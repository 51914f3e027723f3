"""TensorRT backend (implemented in the TensorRT issue)."""
