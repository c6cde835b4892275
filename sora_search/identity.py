"""The index identity: which encoder (name, version, dimension) and sampling rate built an index.

It is written once, when the first index run starts, and checked whenever an index is opened with explicit choices
or searched: vectors from two encoders, or two sampling rates, never meet in one index.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sora_search.errors import EncoderMismatch

if TYPE_CHECKING:
    from sora_search.store import IndexMeta, Store


def check_request(meta: IndexMeta, location: Path, encoder: str | None, fps: float | None) -> None:
    """Refuse to open an existing index with another encoder or sampling rate than it was built with.

    Raises:
        EncoderMismatch: ``encoder`` or ``fps`` (None: no preference) differs from the stored one.
    """
    if encoder is not None and encoder != meta.encoder_name:
        raise EncoderMismatch(f"the index at {location} was built with {meta.encoder_name}, not {encoder}; "
                              "use another --index folder for another encoder")
    if fps is not None and fps != meta.sampling_fps:
        raise EncoderMismatch(f"the index at {location} samples {meta.sampling_fps:g} frame/s, not {fps:g}; "
                              "use another --index folder for another sampling rate")


def check_encoder(meta: IndexMeta, location: Path, encoder: str) -> None:
    """Refuse an index whose stored encoder identity is not what this sora-search's ``encoder`` is.

    Raises:
        EncoderMismatch: another version or dimension of the encoder built the index.
    """
    from sora_search.encoder import encoder_identity

    ident = encoder_identity(encoder)
    if (ident.name, ident.version, ident.dim) != (meta.encoder_name, meta.encoder_version, meta.raw_dim):
        raise EncoderMismatch(
            f"the index at {location} was built with {meta.encoder_name} v{meta.encoder_version} "
            f"({meta.raw_dim}-d) but this sora-search has {ident.describe()}; rebuild it: move the folder "
            "away and run `sora-search index` again")


def ensure(store: Store, location: Path, encoder: str, fps: float) -> IndexMeta:
    """The stored identity, checked against ``encoder``; written first for a new index."""
    from sora_search.encoder import encoder_identity
    from sora_search.store import IndexMeta

    meta = store.meta()
    if meta is not None:
        check_encoder(meta, location, encoder)
        return meta
    ident = encoder_identity(encoder)
    meta = IndexMeta(encoder_name=ident.name, encoder_version=ident.version, raw_dim=ident.dim,
                     input_size=ident.input_size, sampling_fps=fps, projection=None, projection_name="",
                     dim=ident.dim, index_trained_n=0, generation=0)
    store.set_meta(meta)
    return meta
