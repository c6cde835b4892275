"""Embedding one file: decode (in the worker process), cut views, encode, pool over time.

A library file is embedded whole, at the encoder's side S. A probe is embedded through views
(:mod:`sora_search.embed.views`): decoded at S when only whole-frame views are asked for and at 2S otherwise, every
view encoded in one batch with the others, and its blank frames (black, fades, uniform colour) marked and left out of
their neighbours' temporal pooling so that a cut to black does not leak into the seconds around it. An
:class:`~sora_search.embed.inset.InsetFinder` may watch the probe's frames as they pass.

The decode worker and the encoder are made on first use and kept until :meth:`Embedder.close`, so a warm query pays
no start-up. Files may be embedded from several threads at once (:mod:`sora_search.cluster` does so, so that one
file decodes while another is encoded): each thread marked with :meth:`Embedder.pooled_thread` has its own decode
worker, and they share one encoder thread, so that one forward pass at a time holds memory.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sora_search._faults import fault_point
from sora_search.embed.images import cell_means
from sora_search.embed.views import FULL, INSET, blank_frames, decode_side, make_view
from sora_search.errors import NoFramesError
from sora_search.threads import available_cpus
from sora_search.types import FrameBatch, VideoInfo

if TYPE_CHECKING:
    from sora_search.decode import DecodeWorker
    from sora_search.decode.worker import DecodedVideo
    from sora_search.embed.inset import Box, InsetFinder
    from sora_search.encoder import Encoder


# The most probe frames kept in memory between the passes of one query (a probe at S = 224 px: 150 KB a second,
# so about 28 minutes of probe; at 2S, 7 minutes); the decode worker may hold as many bytes of decoded pictures
# (640x360: 12 minutes, 1080p: 80 s).
PROBE_KEEP_BYTES = 256 << 20

# A probe's views are encoded at least this many frames a forward pass: faster on the CPU than its batch of 4, which
# keeps an index run's peak memory down with two files in flight; the vectors are the same (docs/tuning.md).
PROBE_BATCH = 8

# A probe frame whose every cell of a 16 x 16 grid is within this many grey levels (per colour channel, 0-255) of
# the last frame encoded is a repeat of it: a still, a held slide, a static cover image. It takes that frame's
# vectors instead of being encoded again (see _Repeats). x264 moves a cell of a held frame by up to 3 levels; a
# pointer or a caret moves a cell by tens.
REPEAT_TOLERANCE = 4.0


@dataclass(frozen=True, eq=False)
class Embedded:
    """One file's vectors, per view.

    Attributes:
        info: what the decoder learned about the file.
        timestamps_s: (n,) float64 seconds of the sampled frames.
        vectors: {view: (n, raw_dim) float32 raw vectors, temporally pooled}; empty when only a finder watched.
        blank: {view: (n,) bool, which frames of the view are blank (not encoded, their rows meaningless)}; all
            False for a library file.
        regions: {view: (n, region_count, raw_dim) float16 region vectors of each frame, not pooled over time}, for
            an encoder with regions (:attr:`~sora_search.encoder.Encoder.region_count`); empty otherwise.
        inset: the rectangle the ``inset`` view cut out, when it is one of the views.
    """

    info: VideoInfo
    timestamps_s: np.ndarray
    vectors: dict[str, np.ndarray]
    blank: dict[str, np.ndarray]
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    inset: Box | None = None


class Embedder:
    """Decodes and encodes files for one index: its encoder, sampling rate and temporal pooling.

    Args:
        encoder_name: an encoder of :data:`sora_search.encoder.ENCODERS`.
        device: a device setting for the encoder (None: ``$SORA_SEARCH_DEVICE``, else CUDA when available).
        fps: frames sampled per second.
        temporal_radius: each vector averages its +-radius neighbours.
        decode_backend: ``auto``, ``decord``, ``pyav`` or ``module:Class`` (see :mod:`sora_search.decode`).
        precision: the encoder's ``fp32``, ``bf16`` or ``int8`` build (see :func:`sora_search.encoder.load_encoder`).
    """

    def __init__(self, encoder_name: str, *, device: str | None, fps: float, temporal_radius: int,
                 decode_backend: str = "auto", precision: str = "fp32") -> None:
        self.encoder_name = encoder_name
        self.precision = precision
        self.fps = fps
        self.temporal_radius = temporal_radius
        self._device = device
        self._decode_backend = decode_backend
        self._encoder: Encoder | None = None
        self._worker: DecodeWorker | None = None
        self._pool_workers: list[DecodeWorker] = []  # one per pooled thread, see pooled_thread
        self._encode_thread: ThreadPoolExecutor | None = None  # the pooled threads' encoder, see pooled_thread
        self._local = threading.local()
        self._pool_threads = 0  # decoder threads per pooled worker, see pooled_thread
        self._lock = threading.Lock()
        self._kept: _Kept | None = None  # the last probe decoded, for the next pass of the same query
        # Seconds per stage since the last reset: decode (waiting for frames), encode, and what callers add; with
        # several threads, their seconds add up.
        self.timings: defaultdict[str, float] = defaultdict(float)

    @property
    def device(self) -> str | None:
        """The device setting the encoder is loaded with (None: ``$SORA_SEARCH_DEVICE``, else CUDA if available)."""
        return self._device

    @property
    def decode_backend(self) -> str:
        return self._decode_backend

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the time spent in the block to ``timings[stage]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.timings[stage] += time.perf_counter() - start

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    from sora_search.encoder import load_encoder

                    self._encoder = load_encoder(self.encoder_name, device=self._device, precision=self.precision)
        return self._encoder

    @property
    def encoder_device(self) -> str | None:
        """Where the loaded encoder runs; None before it is loaded."""
        return None if self._encoder is None else self._encoder.device

    def worker(self, timeout_s: float) -> DecodeWorker:
        """The decode child (the calling thread's own in a pooled thread), started on first use; a decoder silent
        for ``timeout_s`` is killed."""
        from sora_search.decode import DecodeWorker

        pooled = getattr(self._local, "pooled", False)
        worker = getattr(self._local, "worker", None) if pooled else self._worker
        if worker is None or worker.closed:
            own = None
            if pooled:
                # The first pooled thread takes over this embedder's own child, idle while the pool runs, rather than
                # start one more process; the pool's end stops it with the others.
                with self._lock:
                    if self._worker is not None and not (self._worker.closed or self._worker.busy):
                        own, self._worker = self._worker, None
            worker = own or DecodeWorker(backend=self._decode_backend, timeout_s=timeout_s)
            if pooled:
                self._local.worker = worker
                with self._lock:
                    self._pool_workers.append(worker)
            else:
                self._worker = worker
        worker.timeout_s = float(timeout_s)
        worker.threads = self._pool_threads if pooled else 0
        return worker

    def pooled_thread(self, size: int = 1) -> None:
        """Mark the calling thread as one of a pool of ``size``: it decodes with its own worker, until
        :meth:`close_pool`, and encodes through the one encoder thread the pool shares (until :meth:`close`). The
        pool's decoders share the cores: each gets ``cores // size`` threads rather than one per core."""
        self._local.pooled = True
        with self._lock:
            self._pool_threads = max(1, available_cpus() // max(1, size))
            if self._encode_thread is None:
                self._encode_thread = ThreadPoolExecutor(1, thread_name_prefix="sora-encode")

    def _encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """:func:`encode` of ``frames``, in the pool's encoder thread when called from a pooled thread: two forward
        passes at once only share the CPU's cores, and each thread's allocator would keep what its passes freed."""
        thread = self._encode_thread if getattr(self._local, "pooled", False) else None
        if thread is None:
            return encode(self.encoder, frames)
        return thread.submit(encode, self.encoder, frames).result()

    def close_pool(self) -> None:
        """Stop the pooled threads' decode workers: a thread waiting on one gets a VideoDecodeError, and one that
        starts another file gets a new worker, which the next call stops."""
        with self._lock:
            workers, self._pool_workers = self._pool_workers, []
        for worker in workers:
            worker.close()

    def close(self) -> None:
        self.close_pool()
        if self._encode_thread is not None:
            self._encode_thread.shutdown()
            self._encode_thread = None
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def file(self, path: str | Path, *, timeout_s: float) -> Embedded:
        """A library file, whole, at the encoder's side: ``vectors[FULL]`` (n, raw_dim) float32.

        Raises:
            VideoError: the file cannot be decoded, or yields no frame.
        """
        return self._embed(path, [FULL], self._input_size(), timeout_s=timeout_s)

    def _input_size(self) -> int:
        """The encoder's side, known without loading it, so the decode child starts on a file or probe while the
        encoder loads."""
        from sora_search.encoder import encoder_identity

        return encoder_identity(self.encoder_name).input_size

    def probe(self, path: str | Path, views: Sequence[str], *, timeout_s: float, blank_std: float,
              finder: InsetFinder | None = None, box: Box | None = None, every: int = 1) -> Embedded:
        """A probe through ``views`` (names of :mod:`sora_search.embed.views`).

        The probe's frames are kept in memory (up to ``PROBE_KEEP_BYTES``) until :meth:`forget_probe`, so the next
        pass of the same query that needs them at the same side encodes them again without decoding them again.

        Args:
            blank_std: a view frame whose every colour channel's standard deviation is below this is blank.
            finder: also sees every frame as decoded (at S or 2S); with no views the probe is decoded at 2S only
                for it.
            box: the rectangle the ``inset`` view cuts out.
            every: encode only every ``every``-th sampled frame (the first, then each ``every``-th after it), each
                on its own, not pooled with its neighbours: a sample of the probe (the finder still sees every frame).

        Raises:
            VideoError: the probe cannot be decoded, or yields no frame.
        """
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        size = self._input_size()
        side = decode_side(views, size) if views else 2 * size
        embedded = self._embed(path, list(views), side, timeout_s=timeout_s, probe_views=(blank_std, finder, box),
                               every=every)
        return replace(embedded, inset=box) if INSET in views else embedded

    def keeps(self, path: str | Path) -> bool:
        """Whether the frames of ``path`` at the encoder's side are kept from an earlier :meth:`probe` (a probe not
        too long to keep): a pass over them decodes nothing."""
        kept = self._kept
        return kept is not None and kept.batches_for(_probe_key(path, self._input_size(), self.fps)) is not None

    def forget_probe(self) -> None:
        """Drop the probe frames kept by :meth:`probe`, here and in the decode worker."""
        self._kept = None
        if self._worker is not None and not self._worker.closed:
            self._worker.forget()

    def _embed(self, path: str | Path, names: list[str], side: int, *, timeout_s: float,
               probe_views: tuple[float, InsetFinder | None, Box | None] | None = None, every: int = 1) -> Embedded:
        from sora_search.encoder import temporal_pool

        seen = 0  # frames decoded so far: which of a batch's frames are in a sample (``every``)
        repeats = _Repeats()  # a probe frame that repeats the last one encoded takes its vectors
        ts_parts: list[np.ndarray] = []
        vec_parts: dict[str, list[np.ndarray]] = {v: [] for v in names}
        blank_parts: dict[str, list[np.ndarray]] = {v: [] for v in names}
        region_parts: dict[str, list[np.ndarray]] = {v: [] for v in names}
        # Without a finder to show every frame, a sample is all the decode worker needs to convert from held pictures.
        ask = every if probe_views is not None and probe_views[1] is None else 1
        with self._frames(path, side, timeout_s, keep=probe_views is not None, every=ask) as (info, batches, sent):
            step = every // sent  # of the frames sent, which are in the sample: 1 where the worker sent it alone
            with self.timed("load"):  # the model, on the first file only: the child decodes ahead meanwhile
                encoder = self.encoder
            size = encoder.identity.input_size
            for batch in batches:
                fault_point("decode")
                if probe_views is None:
                    ts_parts.append(batch.timestamps_s)
                    with self.timed("encode"):
                        vectors, regions = self._encode(batch.frames)
                    vec_parts[FULL].append(vectors)
                    if regions is not None:
                        region_parts[FULL].append(regions)
                    blank_parts[FULL].append(np.zeros(len(batch.frames), dtype=bool))
                else:
                    blank_std, finder, box = probe_views
                    if finder is not None:
                        finder.add(batch.frames, halve=side != size)
                    rows = np.flatnonzero((np.arange(len(batch.frames)) + seen) % step == 0)
                    seen += len(batch.frames)
                    ts_parts.append(batch.timestamps_s[rows])
                    if names and len(rows):
                        frames = batch.frames if step == 1 else batch.frames[rows]
                        with self.timed("encode"):
                            self._encode_views(frames, names, box, size, blank_std, vec_parts, blank_parts,
                                               region_parts, repeats)
                fault_point("encode")
        if not ts_parts:
            raise NoFramesError(path, "no decodable frame")
        blank = {v: np.concatenate(parts) for v, parts in blank_parts.items()}
        radius = self.temporal_radius if every == 1 else 0
        pooled = {v: temporal_pool(np.concatenate(parts), radius=radius, skip=blank[v])
                  for v, parts in vec_parts.items()}
        kept = {v: np.concatenate(parts) for v, parts in region_parts.items() if parts}
        return Embedded(info, np.concatenate(ts_parts), pooled, blank, kept)

    @contextmanager
    def _frames(self, path: str | Path, side: int, timeout_s: float, *, keep: bool,
                every: int = 1) -> Iterator[tuple[VideoInfo, Iterator[FrameBatch], int]]:
        """The file's frames at ``side``: from the probe kept by an earlier call (same file, unchanged, same side)
        or from the decode worker; with ``keep``, a probe decoded whole and within PROBE_KEEP_BYTES is kept, and the
        worker holds its decoded pictures (as many bytes again), so that it gives them at another side undecoded.
        With ``every`` > 1, a probe the worker holds comes as every ``every``-th frame alone (not kept; a decoded one
        comes whole); the third value says which was given: every frame (1) or the sample (``every``)."""
        key = _probe_key(path, side, self.fps) if keep else None
        last = self._kept
        batches = last.batches_for(key) if last is not None else None
        if last is not None and batches is not None:
            yield last.info, iter(batches), 1
            return
        worker = self.worker(timeout_s)
        with self.timed("decode"):
            video = worker.open(path, fps=self.fps, size=side, hold_bytes=PROBE_KEEP_BYTES if keep else 0,
                                every=every)
        sent = every if video.held else 1
        with video:
            kept = _Kept(key, video.info) if key is not None and sent == 1 else None
            yield video.info, self._decoded(video, kept), sent
        if kept is not None and kept.complete:
            self._kept = kept

    def _decoded(self, video: DecodedVideo, kept: _Kept | None) -> Iterator[FrameBatch]:
        """The worker's batches as they come (timed as decode), also kept in ``kept`` while they fit."""
        batches = iter(video)
        while True:
            with self.timed("decode"):  # waiting for the worker; it decodes ahead while we encode
                batch = next(batches, None)
            if batch is None:
                if kept is not None:
                    kept.complete = kept.batches is not None
                return
            if kept is not None and kept.batches is not None:
                kept.nbytes += batch.frames.nbytes
                if kept.nbytes <= PROBE_KEEP_BYTES:
                    kept.batches.append(batch)
                else:  # too long to keep: let go of what was kept so far
                    kept.batches = None
            yield batch

    def _encode_views(self, frames: np.ndarray, names: list[str], box: Box | None, size: int, blank_std: float,
                      vec_parts: dict[str, list[np.ndarray]], blank_parts: dict[str, list[np.ndarray]],
                      region_parts: dict[str, list[np.ndarray]], repeats: _Repeats) -> None:
        """Cut every view of the frames that do not repeat the last one encoded (``repeats``) and encode those that
        are not blank in one batch (a blank one's vector and regions are zero: nothing searches it or pools it with
        its neighbours); a repeat takes the vectors, blank flags and regions of the frame it repeats."""
        encoder = self.encoder
        new, source = repeats.split(frames)
        fresh = frames if len(new) == len(frames) else frames[new]  # moving footage: no copy of the batch
        stacked = np.concatenate([make_view(fresh, v, box, side=size) for v in names])  # empty when all repeat
        blank = blank_frames(stacked, blank_std)
        flat = np.zeros((len(stacked), encoder.identity.dim), dtype=np.float32)
        flat_regions = np.zeros((len(stacked), encoder.region_count, encoder.identity.dim), dtype=np.float16)
        if not blank.all():
            vectors, regions = encode(encoder, stacked[~blank] if blank.any() else stacked,
                                      max(encoder.batch_size, PROBE_BATCH))
            flat[~blank] = vectors
            if regions is not None:
                flat_regions[~blank] = regions
        shape = (len(names), len(new))
        vecs, masks, views_regions = repeats.expand(source, flat.reshape(*shape, flat.shape[1]), blank.reshape(shape),
                                                    flat_regions.reshape(*shape, *flat_regions.shape[1:]))
        for i, v in enumerate(names):
            vec_parts[v].append(vecs[i])
            blank_parts[v].append(masks[i])
            if encoder.region_count:
                region_parts[v].append(views_regions[i])


def encode(encoder: Encoder, frames: np.ndarray, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The encoder's vectors of ``frames`` and, where it has them, their region vectors as float16 (kept per frame
    for the region check of a query, :mod:`sora_search.query.regions`; stored per second for a library file)."""
    if not encoder.region_count:
        return encoder.embed(frames, batch_size), None
    vectors, regions = encoder.embed_regions(frames, batch_size)
    return vectors, regions.astype(np.float16)


@dataclass(eq=False)
class _Repeats:
    """The last probe frame encoded in one embedding (its cell means and its views' outputs), so that a frame that
    repeats it (every cell within REPEAT_TOLERANCE) takes its outputs instead of being encoded again. A run of
    repeats is compared with the frame that was encoded, not with each other, so a slow fade does not drift."""

    cells: np.ndarray | None = None
    last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (views, d), (views,), (views, r, d)

    def split(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``frames`` to encode, and for every frame the index among them of the frame whose outputs it
        takes (-1: the last frame encoded before this batch)."""
        cells = cell_means(frames)
        new: list[int] = []
        source = np.empty(len(frames), dtype=np.int64)
        for i, c in enumerate(cells):
            if self.cells is None or float(np.abs(c - self.cells).max()) > REPEAT_TOLERANCE:
                new.append(i)
                self.cells = c
            source[i] = len(new) - 1
        return np.asarray(new, dtype=np.int64), source

    def expand(self, source: np.ndarray, vectors: np.ndarray, blank: np.ndarray,
               regions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each view's vectors, blank flags and regions for every frame of the batch (:meth:`split`'s ``source``)
        from those of its encoded frames ((views, k, ...) each); the last frame's are kept for the next batch."""
        if self.last is not None:
            vectors, blank, regions = (np.concatenate([prev[:, None], now], axis=1)
                                       for prev, now in zip(self.last, (vectors, blank, regions)))
            source = source + 1
        if vectors.shape[1]:
            self.last = (vectors[:, -1], blank[:, -1], regions[:, -1])
        return vectors[:, source], blank[:, source], regions[:, source]


@dataclass(eq=False)
class _Kept:
    """A probe's frames at one side, kept for the next pass of the same query (see :meth:`Embedder.probe`)."""

    key: tuple[object, ...]
    info: VideoInfo
    batches: list[FrameBatch] | None = field(default_factory=list)  # None once it outgrew PROBE_KEEP_BYTES
    nbytes: int = 0
    complete: bool = False

    def batches_for(self, key: tuple[object, ...] | None) -> list[FrameBatch] | None:
        """These frames, where they are whole and the probe ``key`` names (:func:`_probe_key`; None names none)."""
        return self.batches if key is not None and key == self.key else None


def _probe_key(path: str | Path, side: int, fps: float) -> tuple[object, ...] | None:
    """What a kept probe must match: the file (:func:`~sora_search.decode.base.file_stamp`), the side and the
    sampling rate."""
    from sora_search.decode.base import file_stamp

    stamp = file_stamp(path)
    return None if stamp is None else (*stamp, side, fps)
