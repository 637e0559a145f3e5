"""Precision passes on the simplified FP32 graph: FP16, INT8 calibration + Q/DQ, the accuracy guard.

TensorRT builds strongly typed networks, so precision is decided here, in the ONNX graph:

* :mod:`edgeseg.precision.fp16` — mixed FP16/FP32 graph (Model Optimizer's AutoCast), FP32 I/O;
* :mod:`edgeseg.precision.calibration` — calibration / validation images from folders, dataset
  specs or manifests, preprocessed as the model card says;
* :mod:`edgeseg.precision.ranges` — activation ranges (``max``, ``percentile``, ``entropy``);
* :mod:`edgeseg.precision.int8` — TensorRT calibration cache and Q/DQ placement (Model Optimizer);
* :mod:`edgeseg.precision.guard` — layer sensitivity and the mIoU-drop budget.

Modules import onnx / onnxruntime / modelopt lazily, inside the functions that need them.
"""
