"""The index identity: which encoder (name, version, dimension, precision) and sampling rate built an index.

It is written once, when the first index run starts, and checked whenever an index is opened with explicit choices
or searched: vectors from two encoders, or two sampling rates, never meet in one index.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sora_search.errors import EncoderMismatch

if TYPE_CHECKING:
    from sora_search.store import IndexMeta, Store


def stored_precision(meta: IndexMeta) -> str:
    """``"fp32"``, ``"bf16"`` or ``"int8"``: the precision in the index's encoder version (``"1"``, ``"1+int8.2"``)."""
    from sora_search.encoder import EncoderIdentity

    return EncoderIdentity.split_version(meta.encoder_version)[1]


def new_precision(precision: str | None) -> str:
    """The precision of a new index: the argument, else ``$SORA_SEARCH_PRECISION``, else fp32.

    Raises:
        EncoderError: an unknown precision.
    """
    from sora_search.encoder import precision_setting

    return precision_setting(precision)[0] or "fp32"


def check_request(meta: IndexMeta, location: Path, encoder: str | None, fps: float | None,
                  precision: str | None = None) -> None:
    """Refuse to open an existing index with another encoder, sampling rate or precision than it was built with.
    ``$SORA_SEARCH_PRECISION`` only chooses for new indexes: an existing one keeps its own.

    Raises:
        EncoderMismatch: ``encoder``, ``fps`` or ``precision`` (None: no preference) differs from the stored one.
    """
    if precision is not None and new_precision(precision) != stored_precision(meta):
        raise EncoderMismatch(f"the index at {location} holds {stored_precision(meta)} vectors, not {precision}; "
                              "leave out --precision to search it as it was built, or use another --index folder "
                              "for another precision")
    if encoder is not None and encoder != meta.encoder_name:
        raise EncoderMismatch(f"the index at {location} was built with {meta.encoder_name}, not {encoder}; "
                              "use another --index folder for another encoder")
    if fps is not None and fps != meta.sampling_fps:
        raise EncoderMismatch(f"the index at {location} samples {meta.sampling_fps:g} frame/s, not {fps:g}; "
                              "use another --index folder for another sampling rate")


def check_encoder(meta: IndexMeta, location: Path, encoder: str, precision: str = "fp32") -> None:
    """Refuse an index whose stored encoder identity is not what this sora-search's ``encoder`` at ``precision`` is.

    Raises:
        EncoderMismatch: another version, dimension or precision of the encoder built the index.
    """
    from sora_search.encoder import encoder_identity

    ident = encoder_identity(encoder, precision)
    if (ident.name, ident.stored_version, ident.dim) != (meta.encoder_name, meta.encoder_version, meta.raw_dim):
        raise EncoderMismatch(
            f"the index at {location} was built with {meta.encoder_name} v{meta.encoder_version} "
            f"({meta.raw_dim}-d) but this sora-search has {ident.describe()}; rebuild it: move the folder "
            "away and run `sora-search index` again")


def ensure(store: Store, location: Path, encoder: str, fps: float, precision: str = "fp32") -> IndexMeta:
    """The stored identity, checked against ``encoder`` at ``precision``; written first for a new index."""
    from sora_search.encoder import encoder_identity
    from sora_search.store import IndexMeta

    meta = store.meta()
    if meta is not None:
        check_encoder(meta, location, encoder, precision)
        return meta
    ident = encoder_identity(encoder, precision)
    meta = IndexMeta(encoder_name=ident.name, encoder_version=ident.stored_version, raw_dim=ident.dim,
                     input_size=ident.input_size, sampling_fps=fps, projection=None, projection_name="",
                     dim=ident.dim, index_trained_n=0, generation=0)
    store.set_meta(meta)
    return meta
