"""The precision-realized check over engine-inspector JSON (TensorRT 10 and 11 layouts)."""

from __future__ import annotations

import json

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.trt import check_precision_realized, layer_dtype_counts


def _tensor(name: str, fmt: str, trt11: bool = False) -> dict:
    if trt11:  # TensorRT 11 split "Format/Datatype" into two fields
        dtype = {"Int8": "Int8", "FP16": "Half", "FP32": "Float"}[fmt.split()[0]]
        return {"Name": name, "Dimensions": [1, 8, 16, 16], "DataType": dtype, "Format": fmt}
    formats = {"Int8": "Thirty-two wide channel vectorized row major Int8 format",
               "FP16": "Channel major FP16 format where channel % 8 == 0",
               "FP32": "Row major linear FP32"}
    return {"Name": name, "Dimensions": [1, 8, 16, 16], "Format/Datatype": formats[fmt]}


def _layer(name: str, layer_type: str, in_fmt: str, out_fmt: str, weights: str | None = None,
           trt11: bool = False) -> dict:
    layer = {"Name": name, "LayerType": layer_type, "ParameterType": layer_type,
             "Inputs": [_tensor(f"{name}_in", in_fmt, trt11)],
             "Outputs": [_tensor(f"{name}_out", out_fmt, trt11)]}
    if weights:
        layer["Weights"] = {"Type": weights, "Count": 72}
    return layer


def _engine(*layers: dict, trt11: bool = False) -> str:
    doc: dict = {"Layers": list(layers)}
    if trt11:
        doc["I/O Tensors"] = [{"Name": "images", "IOMode": "Input", "DataType": "Float"}]
    else:
        doc["Bindings"] = ["images", "logits"]
    return json.dumps(doc)


def _int8_engine(trt11: bool = False) -> str:
    return _engine(
        _layer("quantize_images", "Quantize", "FP32", "Int8", trt11=trt11),
        _layer("conv1", "CaskConvolution", "Int8", "Int8", weights="Int8", trt11=trt11),
        _layer("conv2", "CaskConvolution", "Int8", "FP32", weights="Int8", trt11=trt11),
        _layer("resize", "Resize", "FP32", "FP32", trt11=trt11),
        trt11=trt11)


@pytest.mark.parametrize("trt11", [False, True])
def test_int8_realized(trt11: bool) -> None:
    check = check_precision_realized(_int8_engine(trt11), "int8")
    assert check and check.realized
    assert check.counts == {"int8": 2, "fp32": 1}  # the quantize layer is data movement, not compute
    assert "2 compute layer" in check.message


def test_int8_not_realized_when_qdq_runs_standalone() -> None:
    # Q/DQ that TensorRT did not fuse: Int8 tensors appear only between Quantize and Dequantize,
    # every convolution runs in FP32. This is the "INT8 build that is really FP32" failure.
    info = _engine(
        _layer("q", "Quantize", "FP32", "Int8"),
        _layer("dq", "Dequantize", "Int8", "FP32"),
        _layer("conv1", "CaskConvolution", "FP32", "FP32", weights="Float"),
        _layer("reformat", "Reformat", "Int8", "FP32"),
    )
    check = check_precision_realized(info, "int8")
    assert not check
    assert check.counts == {"fp32": 1}
    assert "requested int8" in check.message and "Q/DQ" in check.message


@pytest.mark.parametrize("trt11", [False, True])
def test_fp16_realized_and_silent_fp32_caught(trt11: bool) -> None:
    fp16 = _engine(_layer("conv", "CaskConvolution", "FP16", "FP16", weights="Half", trt11=trt11),
                   _layer("out_cast", "Reformat", "FP16", "FP32", trt11=trt11), trt11=trt11)
    assert check_precision_realized(fp16, "fp16")
    # "fp16=True silently builds FP32 on TensorRT 11": every layer FP32.
    fp32 = _engine(_layer("conv", "CaskConvolution", "FP32", "FP32", weights="Float", trt11=trt11),
                   trt11=trt11)
    check = check_precision_realized(fp32, "fp16")
    assert not check and "requested fp16" in check.message
    assert check_precision_realized(fp32, "fp32")


@pytest.mark.parametrize(
    ("key", "text", "dtype"),
    [
        ("DataType", "Half", "fp16"),
        ("Datatype", "Int8", "int8"),
        ("Format/Datatype", "Channel major FP16 format where channel % 8 == 0", "fp16"),
        ("Format/Datatype", "Float", "fp32"),  # the short form in the 11.1 sampleEditableTimingCache README
    ],
)
def test_each_tensor_type_key_spelling(key: str, text: str, dtype: str) -> None:
    tensor = {"Name": "x", "Format": "Row major linear", key: text}
    doc = {"Layers": [{"Name": "conv", "LayerType": "CaskConvolution", "Inputs": [tensor], "Outputs": []}]}
    assert layer_dtype_counts(doc) == {dtype: 1}


def test_datatype_key_wins_over_format_datatype() -> None:
    tensor = {"Name": "x", "Datatype": "Int8", "Format/Datatype": "Row major linear FP32"}
    doc = {"Layers": [{"Name": "conv", "LayerType": "CaskConvolution", "Inputs": [tensor], "Outputs": []}]}
    assert layer_dtype_counts(doc) == {"int8": 1}


@pytest.mark.parametrize("origin", ["QDQ", "REFORMAT"])
def test_layers_inserted_for_qdq_or_reformat_are_not_compute(origin: str) -> None:
    inserted = dict(_layer("inserted", "PointWiseV2", "Int8", "FP32"), Origin=origin)
    conv = _layer("conv", "CaskConvolution", "FP32", "FP32", weights="Float")
    assert layer_dtype_counts(_engine(inserted, conv)) == {"fp32": 1}


def test_bfloat16_is_not_mistaken_for_fp32() -> None:
    doc = {"Layers": [{"Name": "mm", "LayerType": "gemm", "Inputs": [
        {"Name": "a", "Format/Datatype": "Row major linear BFloat16 format"}], "Outputs": []}]}
    assert layer_dtype_counts(doc) == {"bf16": 1}


def test_names_only_verbosity_is_rejected() -> None:
    with pytest.raises(EdgesegError, match="ProfilingVerbosity.DETAILED"):
        check_precision_realized(json.dumps({"Layers": ["conv1", "conv2"], "Bindings": []}), "int8")


@pytest.mark.parametrize("bad", ["not json", json.dumps({"Bindings": []}), json.dumps([1, 2])])
def test_malformed_documents(bad: str) -> None:
    with pytest.raises(EdgesegError):
        layer_dtype_counts(bad)


def test_unknown_precision() -> None:
    with pytest.raises(EdgesegError, match="precision must be one of"):
        check_precision_realized(_int8_engine(), "int4")
