"""Turning a trained generator into a self-describing ONNX file."""

from tilegen.threads import prepare_openmp

prepare_openmp()  # before anything below imports torch (and with it OpenMP)
