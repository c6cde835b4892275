"""Float16 copies of the indexed vectors, looked up by store id, for re-ranking a PQ shortlist exactly.

File layout (``vectors.faiss.<token>.f16``, next to the FAISS file that names it)::

    b"SORARR01" | u64 little-endian header length | JSON header | zero padding to 64 bytes
    | ids (n,) int64 | vectors (n, dim) float16

The header holds ``n``, ``dim`` and the ``token`` that the FAISS file's header also names, so a side file from another
save is refused. Both arrays are memory-mapped: a query reads only the rows of its shortlist, through the page cache.
Ids are normally ascending (the store hands them out in order); when they are not, a sort order is kept in memory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from sora_search.index import fileformat

MAGIC = b"SORARR01"
ALIGN = 64
# Rows per chunk when a file is written: bounds the memory a save of a large index takes.
WRITE_CHUNK = 262_144


class RerankVectors:
    """Vectors by id: a base (in memory or memory-mapped, never written to) plus rows added and removed since.

    Args:
        dim: vector dimension.
        ids: (n,) int64 base ids, unique.
        vectors: (n, dim) float16 base vectors, in the order of ``ids``.
    """

    def __init__(self, dim: int, ids: np.ndarray | None = None, vectors: np.ndarray | None = None) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64) if ids is None else ids
        self._vecs = np.zeros((0, dim), dtype=np.float16) if vectors is None else vectors
        self._order: np.ndarray | None = None  # set when base ids are not ascending
        self._sorted = self._ids
        if len(self._ids) > 1 and not bool(np.all(np.diff(self._ids) > 0)):
            self._order = np.argsort(self._ids, kind="stable")
            self._sorted = self._ids[self._order]
        self._removed = np.zeros(0, dtype=np.int64)  # base ids dropped since (sorted)
        self._new_ids: list[np.ndarray] = []
        self._new_vecs: list[np.ndarray] = []
        self._delta: tuple[np.ndarray, np.ndarray] | None = None  # (sorted ids, vectors) of the added rows

    @property
    def changed(self) -> bool:
        return bool(len(self._removed) or self._new_ids)

    def __len__(self) -> int:
        return len(self._ids) - len(self._removed) + sum(len(i) for i in self._new_ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """ids (n,) int64 not held yet; vectors (n, dim) float32 (stored as float16)."""
        if len(ids):
            self._new_ids.append(np.asarray(ids, dtype=np.int64).copy())
            self._new_vecs.append(np.asarray(vectors, dtype=np.float16))
            self._delta = None

    def remove(self, ids: np.ndarray) -> None:
        """Forget these ids (unknown ids are ignored)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self._new_ids:
            keep = [~np.isin(i, ids) for i in self._new_ids]
            self._new_vecs = [v[k] for v, k in zip(self._new_vecs, keep) if k.any()]
            self._new_ids = [i[k] for i, k in zip(self._new_ids, keep) if k.any()]
            self._delta = None
        in_base = ids[np.isin(ids, self._sorted)]
        self._removed = np.union1d(self._removed, in_base)

    def _added(self) -> tuple[np.ndarray, np.ndarray]:
        if self._delta is None:
            ids = np.concatenate(self._new_ids) if self._new_ids else np.zeros(0, dtype=np.int64)
            vecs = np.concatenate(self._new_vecs) if self._new_vecs else np.zeros((0, self.dim), dtype=np.float16)
            order = np.argsort(ids, kind="stable")
            self._delta = (ids[order], vecs[order])
        return self._delta

    def get(self, ids: np.ndarray) -> np.ndarray:
        """(m, dim) float32 vectors of ``ids`` (m,) int64, each held here; rows of unknown ids are zero."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        pos = np.searchsorted(self._sorted, ids)
        pos_ok = pos < len(self._sorted)
        hit = np.zeros(len(ids), dtype=bool)
        hit[pos_ok] = self._sorted[pos[pos_ok]] == ids[pos_ok]
        rows = pos[hit] if self._order is None else self._order[pos[hit]]
        if len(rows):
            # Sorted row numbers read a memory map front to back.
            ordered = np.argsort(rows, kind="stable")
            got = np.empty((len(rows), self.dim), dtype=np.float32)
            got[ordered] = self._vecs[rows[ordered]]
            out[hit] = got
        if self._new_ids and not hit.all():
            d_ids, d_vecs = self._added()
            miss = np.flatnonzero(~hit)
            p = np.minimum(np.searchsorted(d_ids, ids[miss]), max(0, len(d_ids) - 1))
            found = d_ids[p] == ids[miss] if len(d_ids) else np.zeros(len(miss), dtype=bool)
            out[miss[found]] = d_vecs[p[found]]
        return out

    def parts(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """What is held, as (ids (b,) int64, vectors (b, dim) float16) chunks: the base less removals, then adds."""
        for lo in range(0, len(self._ids), WRITE_CHUNK):
            ids = np.asarray(self._ids[lo:lo + WRITE_CHUNK])
            keep = ~np.isin(ids, self._removed) if len(self._removed) else slice(None)
            yield ids[keep], np.asarray(self._vecs[lo:lo + WRITE_CHUNK])[keep]
        if self._new_ids:
            yield self._added()

    def write(self, path: str | Path, token: str) -> None:
        """Write what is held to ``path`` atomically (see the module docstring)."""
        write_parts(path, self.dim, token, list(self.parts()))

    @classmethod
    def open(cls, path: str | Path, token: str, *, mmap: bool = True) -> RerankVectors:
        """Open a file made by :meth:`write` or :func:`write_parts`, memory-mapped unless ``mmap`` is False.

        Raises:
            StoreError: the file is missing, truncated, or from another save (its token differs).
        """
        p = Path(path)
        try:
            with open(p, "rb") as f:
                hlen = fileformat.header_length(f, p, MAGIC, "re-rank")
                header = json.loads(f.read(hlen))
            n, dim = int(header["n"]), int(header["dim"])
        except OSError as e:
            raise fileformat.corrupt(p, f"cannot read it: {e}") from e
        except (ValueError, KeyError, TypeError) as e:
            raise fileformat.corrupt(p, f"bad header: {e}") from e
        if header.get("token") != token:
            raise fileformat.corrupt(p, f"it belongs to save {header.get('token')!r}, not {token!r}")
        start = _data_start(hlen)
        if p.stat().st_size != start + n * 8 + n * dim * 2:
            raise fileformat.corrupt(p, "wrong size (truncated?)")
        if n == 0:
            return cls(dim)
        ids: np.ndarray
        vecs: np.ndarray
        if mmap:
            ids = np.memmap(p, dtype=np.int64, mode="r", offset=start, shape=(n,))
            vecs = np.memmap(p, dtype=np.float16, mode="r", offset=start + n * 8, shape=(n, dim))
        else:
            raw = p.read_bytes()
            ids = np.frombuffer(raw, dtype=np.int64, count=n, offset=start)
            vecs = np.frombuffer(raw, dtype=np.float16, count=n * dim, offset=start + n * 8).reshape(n, dim)
        return cls(dim, np.asarray(ids), np.asarray(vecs))  # plain views of the map: no memmap overhead per read


def _data_start(hlen: int) -> int:
    return -(-(len(MAGIC) + 8 + hlen) // ALIGN) * ALIGN


def _bytes(a: np.ndarray, dtype: type) -> memoryview:
    return np.ascontiguousarray(a, dtype=dtype).reshape(-1).view(np.uint8).data


def write_parts(path: str | Path, dim: int, token: str, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write (ids (b,) int64, vectors (b, dim) float16) parts as one re-rank file, atomically, chunk by chunk."""
    n = sum(len(i) for i, _ in parts)
    encoded = json.dumps({"n": n, "dim": dim, "token": token}, sort_keys=True).encode()
    pad = _data_start(len(encoded)) - (len(MAGIC) + 8 + len(encoded))

    def chunks() -> Iterable[bytes | memoryview]:
        yield MAGIC
        yield struct.pack("<Q", len(encoded))
        yield encoded
        yield b"\0" * pad
        for ids, _ in parts:
            yield _bytes(ids, np.int64)
        for _, vecs in parts:
            for lo in range(0, len(vecs), WRITE_CHUNK):
                yield _bytes(vecs[lo:lo + WRITE_CHUNK], np.float16)

    fileformat.atomic_write_bytes(path, chunks())
