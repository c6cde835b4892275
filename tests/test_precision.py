"""The bf16 and int8 encoders: their vectors against float32, and the precision recorded in and enforced by the
index."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from sora_search import identity
from sora_search.cli import cli
from sora_search.encoder import EncoderIdentity, cpu_has_bf16, encoder_identity, load_encoder, precision_setting
from sora_search.encoder.base import INT8_RECIPE
from sora_search.errors import EncoderError, EncoderMismatch
from sora_search.library import DB_NAME, Library
from sora_search.store import Store


def _frames() -> np.ndarray:
    """14 frames at 224 px: pans across two scikit-image photos the int8 calibration did not see."""
    from PIL import Image
    from skimage import data

    frames = []
    for img in (data.stereo_motorcycle()[0], data.horse()):
        img = np.asarray(img)
        if img.dtype == bool:
            img = (img * 200 + 30).astype(np.uint8)
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        for i in range(7):
            y, x = i * (h // 20), i * (w // 20)
            crop = np.ascontiguousarray(img[y:y + h * 2 // 3, x:x + w * 2 // 3])
            frames.append(np.asarray(Image.fromarray(crop).resize((224, 224), Image.BILINEAR)))
    return np.stack(frames)


def test_int8_vectors_stay_close_to_float32():
    frames = _frames()
    fp32 = load_encoder("sora-lite0", device="cpu").embed(frames)
    int8_encoder = load_encoder("sora-lite0", device="cpu", precision="int8")
    assert int8_encoder.identity == encoder_identity("sora-lite0", "int8")
    cos = (fp32 * int8_encoder.embed(frames)).sum(axis=1)
    # Measured on real footage: min 0.992-0.999 on three sets of frames, mean 0.997-0.999 (docs/tuning.md).
    assert cos.min() >= 0.99, cos
    assert cos.mean() >= 0.995, cos
    # Nearest neighbours agree: each int8 vector's best fp32 match is its own frame.
    int8 = int8_encoder.embed(frames)
    assert (np.argmax(int8 @ fp32.T, axis=1) == np.arange(len(frames))).all()
    # A short batch runs at the full batch size (fbgemm prepares kernels per shape), with its own frames' vectors.
    assert int8_encoder._rows_to_run(3, "cpu") == int8_encoder.batch_size
    np.testing.assert_allclose(int8_encoder.embed(frames[:3]), int8[:3], atol=1e-5)


def test_bf16_vectors_stay_closer_to_float32_than_int8s():
    frames = _frames()
    fp32 = load_encoder("sora-lite0", device="cpu").embed(frames)
    bf16_encoder = load_encoder("sora-lite0", device="cpu", precision="bf16")
    assert bf16_encoder.identity == encoder_identity("sora-lite0", "bf16")
    bf16 = bf16_encoder.embed(frames)
    cos = (fp32 * bf16).sum(axis=1)
    # Measured on real footage: min 0.9996, mean 0.9997 (docs/tuning.md); int8's min is 0.99.
    assert cos.min() >= 0.999, cos
    assert not np.array_equal(bf16, fp32)  # the trunk did run in bfloat16
    assert (np.argmax(bf16 @ fp32.T, axis=1) == np.arange(len(frames))).all()


def test_cpu_bf16_support_is_read_from_the_cpus_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not cpu_has_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bf16(str(info))
    assert not cpu_has_bf16(str(tmp_path / "missing"))


def test_bf16_on_a_cpu_without_bf16_instructions_warns(monkeypatch, caplog):
    import sora_search.encoder as encoder_module

    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)
    with caplog.at_level("WARNING", logger="sora_search.encoder"):
        load_encoder("sora-lite0", device="cpu", precision="bf16")
    assert "no bf16 instructions" in caplog.text
    caplog.clear()
    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="sora_search.encoder"):
        load_encoder("sora-lite0", device="cpu", precision="bf16")
    assert "bf16" not in caplog.text


def test_building_the_int8_trunk_leaves_torchs_compiler_unloaded():
    """The quantization tracer's per-node stack traces import torch._inductor (seconds of start-up): off while
    building, and the caller's setting restored."""
    code = ("import sys, torch\n"
            "from sora_search.encoder.int8 import cached_trunk\n"
            "from sora_search.encoder.sora import SORA_TAPS\n"
            "cached_trunk(SORA_TAPS)\n"
            "assert 'torch._inductor' not in sys.modules, 'the int8 build imported torch._inductor'\n"
            "assert torch.fx.config.do_not_emit_stack_traces is False\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_identity_records_precision_and_int8_recipe_in_the_version():
    ident = encoder_identity("sora-lite0", "int8")
    assert ident.stored_version == f"1+int8.{INT8_RECIPE}" and "int8" in ident.describe()
    assert encoder_identity("sora-lite0").stored_version == "1"  # what indexes from before precisions hold
    assert EncoderIdentity.split_version("1") == ("1", "fp32")
    assert EncoderIdentity.split_version("1+int8") == ("1", "int8")  # recipe 1, before recipes were recorded
    assert EncoderIdentity.split_version("1+int8.2") == ("1", "int8")
    assert encoder_identity("sora-lite0", "bf16").stored_version == "1+bf16"
    assert EncoderIdentity.split_version("1+bf16") == ("1", "bf16")
    for precision in ("bf16", "int8"):
        with pytest.raises(EncoderError, match=f"no '{precision}' build"):
            encoder_identity("tiny", precision)
    with pytest.raises(EncoderError, match="unknown precision"):
        precision_setting("fp8")


def _index_built_with(tmp_path, precision: str):
    location = tmp_path / precision
    location.mkdir()
    store = Store.open(location / DB_NAME, create=True)
    identity.ensure(store, location, "sora-lite0", 1.0, precision)
    store.close()
    return location


def test_an_index_is_searched_at_the_precision_it_was_built_with(tmp_path, monkeypatch):
    fp32, int8 = _index_built_with(tmp_path, "fp32"), _index_built_with(tmp_path, "int8")
    monkeypatch.setenv("SORA_SEARCH_PRECISION", "int8")  # chooses for new indexes only
    with Library.open(fp32) as lib:
        assert lib._embedder.precision == "fp32"
        assert lib.info().encoder_version == "1"
    monkeypatch.setenv("SORA_SEARCH_PRECISION", "fp32")
    with Library.open(int8) as lib:
        assert lib._embedder.precision == "int8"
    with pytest.raises(EncoderMismatch, match="holds int8 vectors, not fp32"):
        Library.open(int8, precision="fp32")
    with pytest.raises(EncoderMismatch, match="holds fp32 vectors, not int8"):
        Library.open(fp32, precision="int8")
    bf16 = _index_built_with(tmp_path, "bf16")
    with Library.open(bf16) as lib:
        assert lib._embedder.precision == "bf16" and lib.info().encoder_version == "1+bf16"
    with pytest.raises(EncoderMismatch, match="holds bf16 vectors, not fp32"):
        Library.open(bf16, precision="fp32")
    with Library.open(tmp_path / "new") as lib:
        assert lib._embedder.precision == "fp32"
    monkeypatch.setenv("SORA_SEARCH_PRECISION", "int8")
    with Library.open(tmp_path / "new2") as lib:
        assert lib._embedder.precision == "int8"


def test_query_time_check_refuses_another_precision(tmp_path):
    location = _index_built_with(tmp_path, "int8")
    with Store.open(location / DB_NAME, create=False) as store:
        meta = store.meta()
    assert meta is not None and meta.encoder_version == f"1+int8.{INT8_RECIPE}"
    identity.check_encoder(meta, location, "sora-lite0", "int8")
    with pytest.raises(EncoderMismatch, match="rebuild it"):
        identity.check_encoder(meta, location, "sora-lite0", "fp32")
    # An index from another int8 recipe holds other vectors: refused, not searched with this network.
    older = dataclasses.replace(meta, encoder_version="1+int8")
    with pytest.raises(EncoderMismatch, match=r"v1\+int8 .*rebuild it"):
        identity.check_encoder(older, location, "sora-lite0", "int8")


def test_cli_precision_mismatch_is_a_clear_error(tmp_path):
    location = _index_built_with(tmp_path, "fp32")
    clip = tmp_path / "nothing"
    clip.mkdir()
    result = CliRunner().invoke(cli, ["index", str(clip), "--index", str(location), "--precision", "int8"])
    assert result.exit_code == 1, result.output
    assert "holds fp32 vectors, not int8" in result.output
    assert "leave out --precision" in result.output


def test_weights_are_rounded_keeping_each_channels_sum():
    import torch

    from sora_search.encoder.int8 import _round_keeping_sums

    v = torch.from_numpy(np.random.default_rng(0).uniform(-63.0, 63.0, (200, 9)))
    v[0] = torch.tensor([63.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4])  # plain rounding loses 3.2 of its sum
    r = _round_keeping_sums(v, 63)
    assert ((r - v).abs() < 1).all() and r.abs().max() <= 63
    assert torch.equal(r.sum(1), torch.round(v.sum(1)))
    assert r[0, 0] == 63 and sorted(r[0, 1:].tolist()) == [0] * 5 + [1] * 3  # three of the 0.4s round up
    # The fewest elements move: never more than the difference plain rounding left.
    moved = (r != torch.round(v)).sum(1)
    assert torch.equal(moved, (torch.round(v.sum(1)) - torch.round(v).sum(1)).abs().long())


def test_int8_padding_is_zero_padding_of_the_quantized_tensor():
    import torch
    import torch.nn.functional as F

    from sora_search.encoder.int8 import _pad_int8

    x = torch.rand(2, 5, 7, 6) * 6
    for zero_point in (0, 127):
        q = torch.quantize_per_tensor(x - 3 * (zero_point > 0), 6 / 255, zero_point, torch.quint8)
        padded = _pad_int8(q, (1, 0, 1, 0))
        assert (padded.q_scale(), padded.q_zero_point()) == (q.q_scale(), q.q_zero_point())
        assert torch.equal(padded.dequantize(), F.pad(q.dequantize(), (1, 0, 1, 0)))
    with pytest.raises(EncoderError, match="zeros only"):
        _pad_int8(q, (1, 0, 1, 0), "reflect")


def test_shipped_calibration_quantizes_the_input_exactly_and_clips_relu6_at_6():
    from sora_search.encoder.int8 import packaged_ranges

    shipped = packaged_ranges()
    assert shipped["recipe"] == INT8_RECIPE
    named = dict(shipped["ranges"])  # type: ignore[call-overload]
    assert named["activation_post_process_0"] == [-127 / 128, 128 / 128]  # the input: one level per pixel value
    ranges = list(named.values())
    assert all(low <= 0 <= high for low, high in ranges)
    # Every ReLU6 output (low end exactly 0) tops out at 6 at most: calibration ran the float network's clip.
    assert all(high <= 6.0 for low, high in ranges if low == 0.0)
