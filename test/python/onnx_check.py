"""Runs the ONNX checker (onnx.checker.check_model, full_check) on each file given; prints 'ok FILE'."""
import sys

import onnx

print("onnx", onnx.__version__)
for path in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(path), full_check=True)
    print("ok", path)
