"""The int8 encoder: its vectors against float32, and the precision recorded in and enforced by the index."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from sora_search import identity
from sora_search.cli import cli
from sora_search.encoder import EncoderIdentity, encoder_identity, load_encoder, precision_setting
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
    # Measured on real footage: min 0.972, mean 0.984 (docs/tuning.md), short of the 0.99 a default would need;
    # flat synthetic frames (a colour ramp) fall to 0.89.
    assert cos.min() >= 0.975, cos
    assert cos.mean() >= 0.985, cos
    # Nearest neighbours agree: each int8 vector's best fp32 match is its own frame.
    int8 = int8_encoder.embed(frames)
    assert (np.argmax(int8 @ fp32.T, axis=1) == np.arange(len(frames))).all()
    # A short batch runs at the full batch size (fbgemm prepares kernels per shape), with its own frames' vectors.
    assert int8_encoder._rows_to_run(3, "cpu") == int8_encoder.batch_size
    np.testing.assert_allclose(int8_encoder.embed(frames[:3]), int8[:3], atol=1e-5)


def test_identity_records_precision_in_the_version():
    ident = encoder_identity("sora-lite0", "int8")
    assert ident.stored_version == "1+int8" and "int8" in ident.describe()
    assert encoder_identity("sora-lite0").stored_version == "1"  # what indexes from before precisions hold
    assert EncoderIdentity.split_version("1") == ("1", "fp32")
    assert EncoderIdentity.split_version("1+int8") == ("1", "int8")
    with pytest.raises(EncoderError, match="no 'int8' build"):
        encoder_identity("tiny", "int8")
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
    with Library.open(tmp_path / "new") as lib:
        assert lib._embedder.precision == "fp32"
    monkeypatch.setenv("SORA_SEARCH_PRECISION", "int8")
    with Library.open(tmp_path / "new2") as lib:
        assert lib._embedder.precision == "int8"


def test_query_time_check_refuses_another_precision(tmp_path):
    location = _index_built_with(tmp_path, "int8")
    with Store.open(location / DB_NAME, create=False) as store:
        meta = store.meta()
    assert meta is not None and meta.encoder_version == "1+int8"
    identity.check_encoder(meta, location, "sora-lite0", "int8")
    with pytest.raises(EncoderMismatch, match="rebuild it"):
        identity.check_encoder(meta, location, "sora-lite0", "fp32")


def test_cli_precision_mismatch_is_a_clear_error(tmp_path):
    location = _index_built_with(tmp_path, "fp32")
    clip = tmp_path / "nothing"
    clip.mkdir()
    result = CliRunner().invoke(cli, ["index", str(clip), "--index", str(location), "--precision", "int8"])
    assert result.exit_code == 1, result.output
    assert "holds fp32 vectors, not int8" in result.output
    assert "leave out --precision" in result.output
