"""Turning a trained generator into a self-describing ONNX file."""
