"""The Polygraphy calls edgeseg makes exist, with these keywords, in the installed Polygraphy.

Polygraphy has no type hints, so mypy (``test_typecheck.py``) cannot check the calls into it; these
signatures are the part of its API the TensorRT path depends on, and a Polygraphy upgrade that
renamed one would otherwise surface only on a machine with TensorRT.
"""

from __future__ import annotations

import inspect

import pytest
from polygraphy.backend.trt import (
    CreateConfig,
    NetworkFromOnnxPath,
    PostprocessConfig,
    TrtRunner,
    engine_from_bytes,
    engine_from_network,
    save_engine,
)
from polygraphy.backend.trt.config import _CreateConfigCommon


@pytest.mark.parametrize(
    ("func", "args", "kwargs"),
    [
        (NetworkFromOnnxPath, ("model.onnx",), {"strongly_typed": True}),
        (CreateConfig, (), {"tf32": False}),
        (_CreateConfigCommon.__init__, (None,), {"profiles": [], "memory_pool_limits": {},
                                                 "profiling_verbosity": None, "load_timing_cache": None}),
        (PostprocessConfig, (None, print), {}),
        (engine_from_network, ((None, None, None),), {"config": None, "save_timing_cache": None,
                                                      "runtime": None}),
        (engine_from_bytes, (b"",), {"runtime": None}),
        (save_engine, (None, "model.engine"), {}),
        (TrtRunner, (None,), {"name": "tensorrt:model.engine"}),
        (TrtRunner.infer, (None, {}), {"check_inputs": False}),
        (TrtRunner.infer_impl, (None, {}), {"copy_outputs_to_host": False}),
        (TrtRunner.get_input_metadata, (None,), {"use_numpy_dtypes": False}),
    ],
)
def test_polygraphy_accepts_what_edgeseg_passes(func: object, args: tuple, kwargs: dict) -> None:
    inspect.signature(func).bind(*args, **kwargs)  # type: ignore[arg-type]  # raises TypeError on a mismatch


def test_create_config_passes_unknown_keywords_on() -> None:
    # CreateConfig forwards **kwargs to _CreateConfigCommon; a keyword neither knows must fail there.
    with pytest.raises(TypeError, match="no_such_option"):
        CreateConfig(no_such_option=True)
