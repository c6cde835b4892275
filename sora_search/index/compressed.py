"""IVF-PQ re-ranked from float16 vectors, served from disk: the index kind from ``PQ_MIN_VECTORS`` on (its sharded
build is :mod:`sora_search.index.shards`).

A PQ search takes ``k * RERANK_FACTOR`` candidates by their 32-byte codes and re-ranks them by exact inner product
with their float16 vectors. Those come from a memory-mapped side file written with the lists
(:mod:`sora_search.index.rerank`), not from the store's raw vectors through the projection: a probe re-ranks about
10 x 512 candidates, which read by id from SQLite (704-d blobs) and projected costs tens of ms and puts the store
under every search; the side file costs 2 bytes a dimension on disk and a query touches only its shortlist's rows,
through the page cache.

A saved PQ index is three files: ``vectors.faiss`` (the checked header and faiss's serialized index, whose inverted
lists are ``OnDiskInvertedLists``: rotation, centroids, codebooks and list offsets only),
``vectors.faiss.<token>.ivfdata`` (codes and ids) and ``vectors.faiss.<token>.f16`` (re-rank vectors). Every save
that writes lists takes a new token and writes both before the header, which is renamed last, so the header always
names a complete pair; files of other tokens are deleted after it. A loaded index maps its lists read-only: adds go
to a small in-memory delta index made from the same trained index, removes to tombstones that searches skip, and
the next save writes lists with both applied.

A learned rotation (faiss ``OPQ``) comes first: the projection puts most variance in a few directions, and the
rotation spreads it over the sub-quantizers the way that loses least. At 10^7 vectors it beat a random rotation
(``RR``) by 0.04 recall@10 after re-ranking, for about a minute more training (``faiss_compressed.py``).
Fast-scan PQ (``PQ{m}x4fs``) is not used: its codes are stored in blocks that ``OnDiskInvertedLists`` cannot merge.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sora_search.index import fileformat
from sora_search.index.gpu import faiss
from sora_search.index.rerank import RerankVectors
from sora_search.index.sizing import RERANK_FACTOR

# The most memory a batch of searches gives the float32 copies of its shortlisted vectors (the 2 counts the delta's).
RERANK_BYTES = 64 << 20


def factory(dim: int, nlist: int, m: int) -> str:
    return f"OPQ{m},IVF{nlist},PQ{m}"


def ivf_of(index: Any) -> Any:
    """The IVF inside ``index`` (itself, or the one behind a rotation), downcast to its own type."""
    fx = faiss()
    return fx.downcast_index(fx.extract_index_ivf(index))


def list_ids(ivf: Any) -> np.ndarray:
    """Every id in ``ivf``'s inverted lists, (n,) int64, in list order."""
    fx = faiss()
    parts = [fx.rev_swig_ptr(ivf.invlists.get_ids(i), ivf.invlists.list_size(i)).copy()
             for i in range(ivf.nlist) if ivf.invlists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def untrained(dim: int, nlist: int, m: int) -> Any:
    """An untrained rotation + IVF-PQ inner-product index with this package's training settings."""
    fx = faiss()
    index = fx.index_factory(dim, factory(dim, nlist, m), fx.METRIC_INNER_PRODUCT)
    ivf = ivf_of(index)
    ivf.cp.min_points_per_centroid = 1
    ivf.cp.seed = 1234
    ivf.cp.verbose = False
    ivf.pq.cp.min_points_per_centroid = 1  # 256 centroids per sub-quantizer: small samples would warn on stderr
    ivf.pq.cp.seed = 1234
    ivf.do_polysemous_training = False  # the factory turns it on; it costs minutes and is not used
    return index


def read_bytes(data: bytes | memoryview | np.ndarray, flags: int = 0) -> Any:
    """A faiss index from serialized bytes, read with faiss ``IO_FLAG_*`` ``flags``."""
    fx = faiss()
    reader = fx.VectorIOReader()
    fx.copy_array_to_vector(np.frombuffer(data, dtype=np.uint8), reader.data)
    return fx.read_index(reader, flags)


def serialize(index: Any) -> bytes:
    return bytes(faiss().serialize_index(index))


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """faiss's OnDiskInvertedLists printf()s each file resize; keep that off stdout (results go there). The whole
    process's fd 1 is redirected meanwhile: only saves and merges, which a writer makes, run under it."""
    if os.name != "posix":
        yield
        return
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def merge_lists(trained: bytes, lists: list[Any], ivfdata: Path) -> Any:
    """The trained index ``trained`` holding the entries of inverted ``lists`` merged into ``ivfdata`` (on disk)."""
    fx = faiss()
    out = read_bytes(trained)
    ivf = ivf_of(out)
    with _quiet_stdout():
        ondisk = fx.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(ivfdata))
        ptrs = fx.InvertedListsPtrVector()
        for il in lists:
            ptrs.push_back(il)
        ntotal = ondisk.merge_from_multiple(ptrs.data(), ptrs.size(), False)
    ivf.replace_invlists(ondisk, True)
    ondisk.this.disown()
    out.ntotal = ivf.ntotal = ntotal
    return out


def copy_lists(trained: bytes, lists: list[Any], ivfdata: Path, drop: np.ndarray) -> Any:
    """As :func:`merge_lists`, leaving out the entries whose ids are in ``drop`` ((n,) int64).

    faiss's ``remove_ids`` on freshly merged on-disk lists was seen to duplicate entries when lists shrink by much
    (a third of them removed, 64 lists), so entries are filtered while they are copied instead.
    """
    fx = faiss()
    out = read_bytes(trained)
    ivf = ivf_of(out)
    nlist, code_size = ivf.nlist, ivf.code_size
    with _quiet_stdout():
        ondisk = fx.OnDiskInvertedLists(nlist, code_size, str(ivfdata))
        total = sum(il.list_size(i) for il in lists for i in range(nlist))
        if total:
            ondisk.update_totsize(total * (code_size + 8))  # one file size up front; lists then fill it in order
        ntotal = 0
        for i in range(nlist):
            ids, codes = [], []
            for il in lists:
                n = il.list_size(i)
                if n:
                    ids.append(fx.rev_swig_ptr(il.get_ids(i), n).copy())
                    codes.append(fx.rev_swig_ptr(il.get_codes(i), n * code_size).copy().reshape(n, code_size))
            if not ids:
                continue
            all_ids, all_codes = np.concatenate(ids), np.concatenate(codes)
            keep = ~np.isin(all_ids, drop)
            keep_ids, keep_codes = np.ascontiguousarray(all_ids[keep]), np.ascontiguousarray(all_codes[keep])
            if len(keep_ids):
                ondisk.add_entries(i, len(keep_ids), fx.swig_ptr(keep_ids), fx.swig_ptr(keep_codes))
                ntotal += len(keep_ids)
    ivf.replace_invlists(ondisk, True)
    ondisk.this.disown()
    out.ntotal = ivf.ntotal = ntotal
    return out


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PQState:
    """The PQ side of a :class:`VectorIndex`: the base index, its re-rank vectors, and for a base mapped from disk
    the delta index and tombstones that hold changes until the next save."""

    def __init__(self, index: Any, trained: bytes, rerank: RerankVectors, *,
                 files: tuple[str, str, str] | None = None, factor: int = RERANK_FACTOR) -> None:
        self.index = index
        self.trained = trained  # the serialized trained, empty index: makes deltas, shards and saved lists
        self.rerank = rerank
        self.files = files  # (token, ivfdata name, re-rank name) the base maps; None: lists in memory
        self.factor = factor
        self.delta: Any = None
        self.tombstones = np.zeros(0, dtype=np.int64)
        self._base_ids: np.ndarray | None = None
        self._selector: Any = None

    @property
    def ivf(self) -> Any:
        return ivf_of(self.index)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) - len(self.tombstones) + (int(self.delta.ntotal) if self.delta else 0)

    @property
    def changed(self) -> bool:
        return self.files is None or bool(len(self.tombstones)) or bool(self.delta is not None and self.delta.ntotal)

    def set_nprobe(self, nprobe: int) -> None:
        self.ivf.nprobe = nprobe
        if self.delta is not None:
            ivf_of(self.delta).nprobe = nprobe
        self._selector = None

    def add(self, ids: np.ndarray, x: np.ndarray) -> None:
        if self.files is None:
            self.index.add_with_ids(x, ids)
        else:
            if self.delta is None:
                self.delta = read_bytes(self.trained)
                ivf_of(self.delta).nprobe = self.ivf.nprobe
            self.delta.add_with_ids(x, ids)
        self.rerank.add(ids, x)

    def remove(self, ids: np.ndarray) -> int:
        if self.files is None:
            removed = int(self.index.remove_ids(ids))
        else:
            removed = int(self.delta.remove_ids(ids)) if self.delta is not None else 0
            if self._base_ids is None:
                self._base_ids = np.sort(list_ids(self.ivf))
            gone = np.setdiff1d(ids[np.isin(ids, self._base_ids)], self.tombstones)
            if len(gone):
                self.tombstones = np.union1d(self.tombstones, gone)
                self._selector = None
                removed += len(gone)
        self.rerank.remove(ids)
        return removed

    def _base_search(self, q: np.ndarray, kk: int) -> np.ndarray:
        if not len(self.tombstones):
            return np.asarray(self.index.search(q, kk)[1])
        fx = faiss()
        if self._selector is None:
            batch = fx.IDSelectorBatch(self.tombstones)
            sel = fx.IDSelectorNot(batch)
            ivf_params = fx.SearchParametersIVF(sel=sel, nprobe=self.ivf.nprobe)
            params = fx.SearchParametersPreTransform(index_params=ivf_params)
            self._selector = (batch, sel, ivf_params, params)  # the params borrow the selectors: keep all alive
        return np.asarray(self.index.search(q, kk, params=self._selector[3])[1])

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Shortlist ``k * factor`` by codes, re-rank exactly: (scores (m, k) float32, ids (m, k) int64). Queries
        go in groups whose shortlisted vectors take at most ``RERANK_BYTES`` at once."""
        step = max(1, RERANK_BYTES // (2 * k * self.factor * q.shape[1] * 4))
        if len(q) <= step:
            return self._search(q, k)
        parts = [self._search(q[i:i + step], k) for i in range(0, len(q), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = k * self.factor
        cand = self._base_search(q, kk)
        if self.delta is not None and self.delta.ntotal:
            cand = np.concatenate([cand, np.asarray(self.delta.search(q, kk)[1])], axis=1)
        valid = cand >= 0
        vecs = np.zeros((*cand.shape, q.shape[1]), dtype=np.float32)
        vecs[valid] = self.rerank.get(cand[valid])
        scores = np.einsum("mcd,md->mc", vecs, q).astype(np.float32)
        scores[~valid] = -np.inf
        if cand.shape[1] < k:
            pad = k - cand.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            cand = np.pad(cand, ((0, 0), (0, pad)), constant_values=-1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top, ids = np.take_along_axis(scores, order, axis=1), np.take_along_axis(cand, order, axis=1)
        ids[~np.isfinite(top)] = -1
        return top, ids.astype(np.int64)

    def ids(self) -> np.ndarray:
        held = list_ids(self.ivf)
        if len(self.tombstones):
            held = held[~np.isin(held, self.tombstones)]
        if self.delta is not None and self.delta.ntotal:
            held = np.concatenate([held, list_ids(ivf_of(self.delta))])
        return held

    def write(self, path: Path) -> tuple[dict[str, Any], bytes]:
        """Write the lists and re-rank vectors beside ``path`` (unless the mapped ones are current there):
        (the header fields naming them, the payload for ``path``)."""
        folder, name = path.parent, path.name
        if self.files is not None and not self.changed and all((folder / f).exists() for f in self.files[1:]) \
                and all(f.startswith(f"{name}.") for f in self.files[1:]):
            token, ivfdata, rr = self.files
            payload = serialize(self.index)
        else:
            token = secrets.token_hex(8)
            ivfdata, rr = f"{name}.{token}.ivfdata", f"{name}.{token}.f16"
            folder.mkdir(parents=True, exist_ok=True)
            lists = [self.ivf.invlists] + ([ivf_of(self.delta).invlists] if self.delta is not None else [])
            if len(self.tombstones):
                out = copy_lists(self.trained, lists, folder / ivfdata, self.tombstones)
            else:
                out = merge_lists(self.trained, lists, folder / ivfdata)
            payload = serialize(out)
            del out  # unmaps the new lists before they are synced
            fsync(folder / ivfdata)
            self.rerank.write(folder / rr, token)
        return {"pq_token": token, "ivfdata": ivfdata, "rerank": rr, "rerank_factor": self.factor}, payload

    def nbytes(self) -> int:
        """Memory held by codes, ids and centroids (the re-rank vectors stay on disk, in the page cache)."""
        ivf = self.ivf
        return int(self.ntotal * (ivf.code_size + 8) + ivf.nlist * ivf.d * 4)


def load(path: Path, header: dict[str, Any], payload: memoryview) -> PQState:
    """The PQ state of a file written by :meth:`PQState.write`: lists and re-rank vectors memory-mapped.

    Raises:
        StoreError: the files it names are missing or do not belong to it.
    """
    fx = faiss()
    try:
        token, ivfdata, rr = str(header["pq_token"]), str(header["ivfdata"]), str(header["rerank"])
        factor = int(header.get("rerank_factor", RERANK_FACTOR))
        index = read_bytes(payload, fx.IO_FLAG_SKIP_IVF_DATA | fx.IO_FLAG_READ_ONLY)
    except (KeyError, ValueError, RuntimeError) as e:
        raise fileformat.corrupt(path, f"bad PQ index: {e}") from e
    ivf = ivf_of(index)
    ondisk = fx.downcast_InvertedLists(ivf.invlists)
    if not isinstance(ondisk, fx.OnDiskInvertedLists):
        raise fileformat.corrupt(path, f"PQ lists are {type(ondisk).__name__}, not on disk")
    lists_file = path.parent / ivfdata
    if not lists_file.exists():
        raise fileformat.corrupt(path, f"its lists file {ivfdata} is missing")
    # The saved file name may be another folder's: the lists are looked for beside the header.
    ondisk.filename = str(lists_file)
    ondisk.read_only = True
    try:
        ondisk.do_mmap()
    except RuntimeError as e:
        raise fileformat.corrupt(path, f"cannot map {ivfdata}: {e}") from e
    empty = read_bytes(payload, fx.IO_FLAG_SKIP_IVF_DATA)
    empty_ivf = ivf_of(empty)
    lists = fx.ArrayInvertedLists(empty_ivf.nlist, empty_ivf.code_size)
    empty_ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns and frees them
    empty.ntotal = empty_ivf.ntotal = 0
    rerank = RerankVectors.open(path.parent / rr, token)
    return PQState(index, serialize(empty), rerank, files=(token, ivfdata, rr), factor=factor)


def drop_stale_files(path: Path, keep: Iterable[str]) -> list[str]:
    """Delete PQ lists and re-rank files beside ``path`` that its header does not name. Returns their names."""
    kept = set(keep)
    dropped = []
    for p in sorted(path.parent.glob(f"{path.name}.*")):
        if p.suffix in (".ivfdata", ".f16") and p.name not in kept:
            p.unlink(missing_ok=True)
            dropped.append(p.name)
    return dropped


def side_files(path: Path) -> list[Path]:
    """The PQ lists and re-rank files that the header of ``path`` names and that exist (none for other kinds)."""
    header = fileformat.read_header(path) or {}
    names = [header.get("ivfdata"), header.get("rerank")]
    return [path.parent / n for n in names if isinstance(n, str) and (path.parent / n).exists()]


def stale_files(path: Path) -> list[Path]:
    """PQ side files beside ``path`` that its header does not name (left by a save that was killed)."""
    header = fileformat.read_header(path) or {}
    kept = {header.get("ivfdata"), header.get("rerank")}
    return [p for p in sorted(path.parent.glob(f"{path.name}.*"))
            if p.suffix in (".ivfdata", ".f16") and p.name not in kept]
