"""int8 compute on OpenVINO: run-time (dynamic) int8 quantization of the activations of int8-weight
products, which the CPU plugin does only for f32 activations.

On AVX-512-BF16 CPUs without AMX (AMD Zen 4/5) qembed compiles ``int8`` exports (and ``w8a8``
exports marked ``dynamic_int8``) with f32 activations and ``DYNAMIC_QUANTIZATION_GROUP_SIZE``, so
those products run on the VNNI int8 kernels instead of decompressing the weights to bf16.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from qembed.errors import InputError
from qembed.models import backends
from qembed.models.backends import OPENVINO_DQ_GROUP, openvino_config


#: exports made on first use go to a temporary cache (tests/models/conftest.py), not the user's
pytestmark = pytest.mark.usefixtures("export_cache")


@pytest.fixture
def kind(monkeypatch: pytest.MonkeyPatch):
    """Pretend to run on a CPU kind (qembed.models.runtimes.CPU_KINDS), with no ISA cap."""
    for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "QEMBED_OPENVINO_DQ_GROUP"):
        monkeypatch.delenv(var, raising=False)

    def use(name: str) -> None:
        monkeypatch.setattr(backends, "cpu_kind", lambda: name)
        monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: name in ("amx", "avx512_bf16"))

    return use


def test_int8_runs_int8_compute_on_avx512_bf16(kind, monkeypatch):
    kind("avx512_bf16")
    assert openvino_config("int8") == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                       "DYNAMIC_QUANTIZATION_GROUP_SIZE": OPENVINO_DQ_GROUP}
    # w8a8: only exports whose float-kept products hold int8 weights
    assert openvino_config("w8a8", {"dynamic_int8": True})["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == OPENVINO_DQ_GROUP
    assert openvino_config("w8a8", {}) == {"PERFORMANCE_HINT": "LATENCY"}
    assert openvino_config("float32")["INFERENCE_PRECISION_HINT"] == "f32"
    assert "DYNAMIC_QUANTIZATION_GROUP_SIZE" not in openvino_config("float32")
    assert openvino_config("bfloat16")["INFERENCE_PRECISION_HINT"] == "bf16"
    monkeypatch.setenv("QEMBED_OPENVINO_DQ_GROUP", "1024")
    assert openvino_config("int8")["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == 1024
    monkeypatch.setenv("QEMBED_OPENVINO_DQ_GROUP", "0")  # off: the bf16 path
    assert openvino_config("int8") == {"PERFORMANCE_HINT": "LATENCY"}
    for bad in ("100", "abc", "-16"):
        monkeypatch.setenv("QEMBED_OPENVINO_DQ_GROUP", bad)
        with pytest.raises(InputError, match="QEMBED_OPENVINO_DQ_GROUP must be 0 .* multiple of 16"):
            openvino_config("int8")


def test_other_cpu_kinds_keep_openvinos_choice(kind, monkeypatch):
    kind("amx")  # bf16 on AMX tiles
    assert openvino_config("int8") == {"PERFORMANCE_HINT": "LATENCY"}
    kind("avx512_vnni")  # f32; the plugin quantizes the activations itself (groups of 32)
    assert openvino_config("int8") == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    kind("avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # the capped oneDNN cannot run it
    assert openvino_config("int8")["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == 0


def test_int8_export_compiles_with_dynamic_int8(kind, monkeypatch, tiny_model_path: Path, tiny_encoder, tmp_path):
    """The tiny Qwen3's int8 export loads with the dynamic-int8 properties (what the compiled model
    reports) and keeps its meaning."""
    import openvino as ov

    from qembed.models import load_encoder
    from qembed.models.export import export_model

    kind("avx512_bf16")
    folder = export_model(tiny_model_path, "openvino", "int8", tmp_path / "tiny-int8")
    compiled = []
    real = ov.Core.compile_model

    def spy(self, *args, **kwargs):
        compiled.append(real(self, *args, **kwargs))
        return compiled[-1]

    monkeypatch.setattr(ov.Core, "compile_model", spy)
    enc = load_encoder(str(folder))
    assert enc.precision == "int8"
    assert compiled[-1].get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE") == OPENVINO_DQ_GROUP
    assert compiled[-1].get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    texts = ["花呗怎么还款", "hello world", "一个测试句子，比较长一点的那种"]
    cosine = (enc.encode(texts) * tiny_encoder.encode(texts)).sum(axis=1)
    assert cosine.min() >= 0.99


def test_w8a8_gives_the_float_kept_products_int8_weights(tiny_model_path: Path, tmp_path: Path):
    """Before static quantization the feed-forward output projections get int8 weights (so
    SmoothQuant leaves them alone); every other product keeps float weights for nncf."""
    import openvino as ov

    from qembed.models.export import W8A8_FLOAT_SCOPES, _compress_float_scopes, export_model

    folder = export_model(tiny_model_path, "openvino", "float32", tmp_path / "tiny-fp32")
    model = _compress_float_scopes(ov.Core().read_model(str(folder / "openvino_model.xml")))

    def weight_type(op) -> str:
        node = op.input_value(1).get_node()
        while node.get_input_size():
            node = node.input_value(0).get_node()
        return str(node.get_output_element_type(0))

    types = {op.get_friendly_name(): weight_type(op) for op in model.get_ordered_ops()
             if op.get_type_name() == "MatMul" and op.input_value(1).get_node().get_type_name() != "Parameter"}
    kept = {n: t for n, t in types.items() if any(re.fullmatch(p, n) for p in W8A8_FLOAT_SCOPES)}
    assert len(kept) == 2 and set(kept.values()) == {"<Type: 'int8_t'>"}  # 2 layers
    weighted = {n: t for n, t in types.items() if n not in kept and "proj" in n}
    assert weighted and set(weighted.values()) == {"<Type: 'float32'>"}
