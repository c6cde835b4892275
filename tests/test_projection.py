"""Projection (PCA-whitening) and temporal_pool: NumPy-only maths."""

from __future__ import annotations

import numpy as np
import pytest

from sora_search.encoder import Projection, temporal_pool
from sora_search.errors import EncoderError


def _anisotropic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 with very unequal variances and a non-zero mean, like raw CNN descriptors."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10.0, 0.01, dim)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (rng.standard_normal((n, dim)) * scales @ basis.T + 3.0).astype(np.float32)


def test_centre_only_below_min_vectors() -> None:
    x = _anisotropic(50, 16) + 5.0  # a large shared offset, like raw ReLU-feature descriptors
    p = Projection.fit(x, out_dim=8, min_vectors=100)
    assert p.name == "centre" and not p.is_identity
    assert (p.in_dim, p.out_dim, p.fitted_on) == (16, 16, 50)
    c = x - x.mean(axis=0)
    np.testing.assert_allclose(p.apply(x), c / np.linalg.norm(c, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    again = Projection.from_bytes(p.to_bytes())
    np.testing.assert_array_equal(again.apply(x), p.apply(x))
    assert Projection.fit(x[:1], out_dim=8).is_identity  # one vector has no mean worth removing

def test_fit_apply_shapes_and_norms() -> None:
    x = _anisotropic(600, 64)
    p = Projection.fit(x, out_dim=32, min_vectors=500)
    assert p.name == "pca-32"
    assert (p.in_dim, p.out_dim, p.fitted_on) == (64, 32, 600)
    out = p.apply(x[:10])
    assert out.shape == (10, 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert Projection.fit(x, out_dim=1000, min_vectors=10).out_dim == 64  # capped at in_dim


def test_apply_rejects_wrong_dim() -> None:
    with pytest.raises(ValueError, match=r"\(n, 8\).*\(3, 5\)"):
        Projection.identity(8).apply(np.zeros((3, 5), np.float32))


def test_whitening_is_isotropic_on_top_dims() -> None:
    x = _anisotropic(4000, 48)
    p = Projection.fit(x, out_dim=16, min_vectors=1000, whiten=0.5)
    assert p.name == "pca-whiten0.5-16"
    y = p.transform(x).astype(np.float64)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-3)
    cov = np.cov(y, rowvar=False)
    # Shrinkage pulls each variance to lambda / (lambda + 0.1 * mean(lambda)); the top dims sit near 1.
    np.testing.assert_allclose(np.diag(cov)[:4], 1.0, atol=0.03)
    assert (np.diag(cov) <= 1.0 + 1e-3).all()
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 0.02


def test_shrinkage_keeps_dead_directions_bounded() -> None:
    x = _anisotropic(2000, 32)
    x[:, 5] = 0.25  # a constant dimension: zero variance
    p = Projection.fit(x, out_dim=32, min_vectors=100, whiten=0.5)
    assert np.isfinite(p.matrix).all()
    probe = x[:1].copy()
    probe[0, 5] += 1.0
    assert np.isfinite(p.transform(probe)).all()
    assert np.abs(p.matrix).max() < 1e4


def test_plain_pca_preserves_centred_geometry_on_full_rank() -> None:
    x = _anisotropic(800, 24)
    p = Projection.fit(x, out_dim=24, min_vectors=100)
    c = x - x.mean(axis=0)
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    y = p.apply(x)
    np.testing.assert_allclose(y @ y[:5].T, c @ c[:5].T, atol=1e-5)  # a rotation: cosines unchanged


def test_fit_is_deterministic() -> None:
    x = _anisotropic(1500, 40)
    a, b = Projection.fit(x, 20), Projection.fit(x.copy(), 20)
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize("fitted", [True, False])
def test_bytes_round_trip(fitted: bool) -> None:
    x = _anisotropic(1200, 24)
    p = Projection.fit(x, 12) if fitted else Projection.identity(24)
    q = Projection.from_bytes(p.to_bytes())
    assert (q.name, q.in_dim, q.out_dim, q.fitted_on) == (p.name, p.in_dim, p.out_dim, p.fitted_on)
    np.testing.assert_array_equal(q.apply(x[:20]), p.apply(x[:20]))


@pytest.mark.parametrize("data", [b"", b"not a projection", b"PK\x03\x04garbage" * 10])
def test_from_bytes_garbage(data: bytes) -> None:
    with pytest.raises(EncoderError, match="projection"):
        Projection.from_bytes(data)


def test_from_bytes_foreign_npz() -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, something=np.arange(3))
    with pytest.raises(EncoderError):
        Projection.from_bytes(buf.getvalue())


def test_temporal_pool_radius_zero_is_l2() -> None:
    v = np.array([[3.0, 4.0], [0.0, 2.0]], np.float32)
    np.testing.assert_allclose(temporal_pool(v, 0), [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)


def test_temporal_pool_triangular_weights() -> None:
    v = np.eye(4, dtype=np.float32)  # orthogonal rows make the weights visible
    out = temporal_pool(v, radius=1)
    assert out.shape == (4, 4) and out.dtype == np.float32
    # row 0: weights 2 (self), 1 (next); row 1: 1, 2, 1.
    np.testing.assert_allclose(out[0], np.array([2, 1, 0, 0]) / np.sqrt(5), rtol=1e-6)
    np.testing.assert_allclose(out[1], np.array([1, 2, 1, 0]) / np.sqrt(6), rtol=1e-6)
    out2 = temporal_pool(np.eye(5, dtype=np.float32), radius=2)
    np.testing.assert_allclose(out2[2], np.array([1, 2, 3, 2, 1]) / np.sqrt(19), rtol=1e-6)
    np.testing.assert_allclose(out2[0], np.array([3, 2, 1, 0, 0]) / np.sqrt(14), rtol=1e-6)


def test_temporal_pool_matches_naive_and_edges() -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((7, 5)).astype(np.float32)
    r = 2
    expected = []
    for i in range(7):
        acc = sum((r + 1 - abs(j)) * v[i + j].astype(np.float64) for j in range(-r, r + 1) if 0 <= i + j < 7)
        expected.append(acc / np.linalg.norm(acc))
    np.testing.assert_allclose(temporal_pool(v, r), np.array(expected), rtol=1e-5, atol=1e-6)
    assert temporal_pool(np.zeros((0, 5), np.float32)).shape == (0, 5)
    np.testing.assert_allclose(np.linalg.norm(temporal_pool(v[:1], 3), axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        temporal_pool(v[0])


def test_temporal_pool_leaves_skipped_rows_out_of_their_neighbours() -> None:
    rng = np.random.default_rng(2)
    v = rng.standard_normal((6, 5)).astype(np.float32)
    skip = np.array([False, False, True, False, False, False])
    r = 2
    expected = []
    for i in range(6):
        acc = sum((r + 1 - abs(j)) * v[i + j].astype(np.float64) for j in range(-r, r + 1)
                  if 0 <= i + j < 6 and (j == 0 or not skip[i + j]))
        expected.append(acc / np.linalg.norm(acc))
    out = temporal_pool(v, r, skip=skip)
    np.testing.assert_allclose(out, np.array(expected), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(temporal_pool(v, r, skip=np.zeros(6, bool)), temporal_pool(v, r), rtol=1e-6)
    with pytest.raises(ValueError, match="skip has 5 rows"):
        temporal_pool(v, r, skip=skip[:5])


def test_the_shipped_contrastive_map_is_used_for_the_sora_encoder_only() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(50, 704)).astype(np.float32)
    learned = Projection.for_library(raw, "sora-lite0")
    assert learned.name == "contrastive-256" and (learned.in_dim, learned.out_dim) == (704, 256)
    np.testing.assert_allclose(learned.mean, raw.astype(np.float64).mean(axis=0), atol=1e-5)  # the library's mean
    out = learned.apply(raw)
    assert out.shape == (50, 256) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # Round trip, as the store keeps it.
    back = Projection.from_bytes(learned.to_bytes())
    np.testing.assert_array_equal(back.apply(raw), out)
    # Asked for PCA, or for an encoder or a size nothing ships for: fitted on the library as before.
    assert Projection.for_library(raw, "sora-lite0", kind="pca", min_vectors=10).name == "pca-256"
    assert Projection.for_library(raw[:, :64], "tiny", min_vectors=10).name.startswith("pca-")
    assert Projection.contrastive("sora-lite0", 128) is None
    assert Projection.contrastive("tiny", 256) is None


def test_index_params_name_an_unknown_projection() -> None:
    from sora_search.params import IndexParams

    with pytest.raises(ValueError, match="projection='whitened'"):
        IndexParams(projection="whitened")
