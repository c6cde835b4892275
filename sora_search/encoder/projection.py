"""The projection applied after the encoder: the contrastive map shipped with the package, or PCA fitted on the
library's own descriptors.

The contrastive map (``data/contrastive-<encoder>.npz``, made by ``benchmarks/accuracy/train_projection.py``) was
trained so that a frame and its edited copies land together and different frames apart; PCA only keeps the
directions the library varies most along, which for an ImageNet backbone are what a scene *is* (a page of text, a
test pattern), not which one it is. NumPy only: the index/store side loads and applies it without torch.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass, field

import numpy as np

from sora_search.encoder.base import l2_normalize
from sora_search.errors import EncoderError

logger = logging.getLogger(__name__)

_FORMAT = 1
# Added to every eigenvalue as a fraction of their mean, so directions with almost no variance (noise, or
# dimensions the data never uses) are scaled up by at most ~1/sqrt(0.1 * mean) instead of exploding.
DEFAULT_SHRINKAGE = 0.1


@dataclass(frozen=True, eq=False)
class Projection:
    """``(x - mean) @ matrix``, then L2. The identity has no mean or matrix and only L2-normalises; ``centre`` has
    a mean and no matrix.

    Attributes:
        name: ``"identity"``, ``"centre"``, ``"pca-<out_dim>"`` or ``"pca-whiten<power>-<out_dim>"``.
        in_dim: input dimension (the encoder's raw ``dim``).
        out_dim: output dimension.
        fitted_on: number of vectors it was fitted on (0 for identity).
        mean: (in_dim,) float32, or None for identity.
        matrix: (in_dim, out_dim) float32, or None for identity and centre.
        region_mean: (r, in_dim) float32, the library's mean region vector at each region position (what the
            query's region check centres regions on, :mod:`sora_search.query.regions`), or None: the library has no
            regions, or the projection was fitted before they were stored.
    """

    name: str
    in_dim: int
    out_dim: int
    fitted_on: int = 0
    mean: np.ndarray | None = field(default=None, repr=False)
    matrix: np.ndarray | None = field(default=None, repr=False)
    region_mean: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.in_dim <= 0 or self.out_dim <= 0:
            raise ValueError(f"Projection dims must be positive, got in_dim={self.in_dim}, out_dim={self.out_dim}")
        if self.matrix is not None and self.mean is None:
            raise ValueError("Projection with a matrix needs a mean")
        if self.mean is not None and self.mean.shape != (self.in_dim,):
            raise ValueError(f"Projection {self.name!r}: mean {self.mean.shape} does not match in_dim={self.in_dim}")
        if self.region_mean is not None and (self.region_mean.ndim != 2 or self.region_mean.shape[1] != self.in_dim):
            raise ValueError(f"Projection {self.name!r}: region_mean {self.region_mean.shape} does not match "
                             f"in_dim={self.in_dim}")
        if self.matrix is None:
            if self.in_dim != self.out_dim:
                raise ValueError(f"{self.name} Projection needs in_dim == out_dim, got {self.in_dim} -> {self.out_dim}")
        else:
            assert self.mean is not None
            if self.matrix.shape != (self.in_dim, self.out_dim):
                raise ValueError(
                    f"Projection {self.name!r}: mean {self.mean.shape} / matrix {self.matrix.shape} do not match "
                    f"in_dim={self.in_dim}, out_dim={self.out_dim}"
                )

    @property
    def is_identity(self) -> bool:
        return self.matrix is None and self.mean is None

    @classmethod
    def identity(cls, dim: int) -> Projection:
        """The no-op projection (L2 only) for ``dim``-d vectors."""
        return cls("identity", dim, dim, 0)

    @classmethod
    def fit(cls, vectors: np.ndarray, out_dim: int = 256, *, min_vectors: int = 1000, whiten: float = 0.0,
            shrinkage: float = DEFAULT_SHRINKAGE) -> Projection:
        """Fit PCA (optionally whitening) on the library's own descriptors.

        The default is plain PCA: centre, rotate onto the top ``out_dim`` principal axes, L2. Whitening separated
        copies from non-copies worse on real footage (docs/tuning.md) and stays available to revisit.

        Args:
            vectors: (n, in_dim) float32 raw descriptors from the library.
            out_dim: wanted output dimension; capped at in_dim.
            min_vectors: below this many vectors only the mean is removed (``centre``): too few to estimate the
                principal axes. Centring alone matters: raw descriptors share a large common direction
                (unrelated frames have cosine ~0.8), which the library mean removes, so similarities mean the
                same at every library size. Fewer than 2 vectors give the identity.
            whiten: each principal axis is scaled by ``(lambda + shrinkage * mean(lambda)) ** -whiten``: 0 is
                plain PCA, 0.5 full (shrinkage-regularised) whitening.
            shrinkage: regulariser of the eigenvalues when whitening.

        Returns:
            A fitted projection, deterministic for the same input (float64 ``eigh``, fixed eigenvector signs).
        """
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"Projection.fit expects (n, dim) vectors, got shape {x.shape}")
        n, in_dim = x.shape
        if out_dim <= 0:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        if n < 2:
            return cls.identity(in_dim)
        if n < min_vectors:
            logger.info("%d vectors < min_vectors=%d; centring only", n, min_vectors)
            return cls("centre", in_dim, in_dim, n, x.astype(np.float64).mean(axis=0).astype(np.float32))
        k = min(out_dim, in_dim)
        x64 = x.astype(np.float64)
        mean = x64.mean(axis=0)
        centred = x64 - mean
        cov = centred.T @ centred / max(n - 1, 1)
        eigvals, eigvecs = np.linalg.eigh(cov)  # ascending
        order = np.argsort(eigvals)[::-1][:k]
        lam = np.clip(eigvals[order], 0.0, None)
        vecs = eigvecs[:, order]
        # eigh's signs are arbitrary; pin them so refits and other LAPACKs give the same matrix.
        pivot = np.argmax(np.abs(vecs), axis=0)
        vecs = vecs * np.sign(vecs[pivot, np.arange(k)])
        if whiten:
            reg = shrinkage * float(np.clip(eigvals, 0.0, None).mean())
            vecs = vecs * (lam + max(reg, 1e-12)) ** -whiten
            name = f"pca-whiten{whiten:g}-{k}"
        else:
            name = f"pca-{k}"
        return cls(name, in_dim, k, n, mean.astype(np.float32), vecs.astype(np.float32))

    @classmethod
    def contrastive(cls, encoder_name: str, out_dim: int, vectors: np.ndarray | None = None) -> Projection | None:
        """The shipped contrastive map for ``encoder_name`` (None when none ships for it at ``out_dim``), centred on
        the mean of ``vectors`` (the library's raw descriptors) when given, else on its training frames' mean."""
        from importlib import resources

        data = resources.files("sora_search.encoder").joinpath("data").joinpath(f"contrastive-{encoder_name}.npz")
        if not data.is_file():
            return None
        shipped = cls.from_bytes(data.read_bytes())
        if shipped.out_dim != out_dim or shipped.matrix is None:
            return None
        mean = shipped.mean if vectors is None or len(vectors) < 2 else \
            np.asarray(vectors, dtype=np.float64).mean(axis=0).astype(np.float32)
        return cls(shipped.name, shipped.in_dim, out_dim, len(vectors) if vectors is not None else 0, mean,
                   shipped.matrix)

    @classmethod
    def for_library(cls, vectors: np.ndarray, encoder_name: str, *, kind: str = "contrastive", out_dim: int = 256,
                    min_vectors: int = 1000) -> Projection:
        """The projection an index of ``vectors`` ((n, in_dim) raw descriptors) gets: ``kind="contrastive"`` is the
        shipped map where one ships for the encoder (PCA otherwise), ``"pca"`` always :meth:`fit`."""
        if kind == "contrastive":
            learned = cls.contrastive(encoder_name, out_dim, vectors)
            if learned is not None:
                return learned
        return cls.fit(vectors, out_dim, min_vectors=min_vectors)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Project and L2-normalise.

        Args:
            vectors: (n, in_dim) float.

        Returns:
            (n, out_dim) float32, L2-normalised rows.
        """
        return l2_normalize(self.transform(vectors))

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Project without the final L2: (n, in_dim) -> (n, out_dim) float32."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"projection {self.name!r} expects (n, {self.in_dim}) vectors, got shape {x.shape}")
        if self.mean is None:
            return x.copy()
        if self.matrix is None:
            return x - self.mean
        return ((x - self.mean) @ self.matrix).astype(np.float32, copy=False)

    def to_bytes(self) -> bytes:
        """Serialise with ``np.savez`` (no pickle)."""
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT, dtype=np.int64),
            "name": np.array(self.name),
            "dims": np.array([self.in_dim, self.out_dim, self.fitted_on], dtype=np.int64),
        }
        if self.mean is not None:
            arrays["mean"] = self.mean.astype(np.float32)
        if self.matrix is not None:
            arrays["matrix"] = self.matrix.astype(np.float32)
        if self.region_mean is not None:
            arrays["region_mean"] = self.region_mean.astype(np.float32)
        np.savez(buf, allow_pickle=False, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Projection:
        """Inverse of :meth:`to_bytes`.

        Raises:
            EncoderError: the data is not a projection written by this version (corrupt or foreign).
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                fmt = int(npz["format"])
                if fmt != _FORMAT:
                    raise ValueError(f"unsupported projection format {fmt} (this version reads {_FORMAT})")
                name = str(npz["name"])
                in_dim, out_dim, fitted_on = (int(v) for v in npz["dims"])
                mean = npz["mean"].astype(np.float32) if "mean" in npz.files else None
                matrix = npz["matrix"].astype(np.float32) if "matrix" in npz.files else None
                regions = npz["region_mean"].astype(np.float32) if "region_mean" in npz.files else None
            return cls(name, in_dim, out_dim, fitted_on, mean, matrix, regions)
        except (ValueError, KeyError, OSError, EOFError, TypeError, zipfile.BadZipFile) as exc:
            raise EncoderError(
                f"stored projection could not be read ({type(exc).__name__}: {exc}); "
                "move the index folder away and run `sora-search index PATH` again to rebuild it"
            ) from exc
