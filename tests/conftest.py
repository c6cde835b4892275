"""Shared fixtures: synthetic clips made once per test session with ffmpeg (never committed)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pg
from tests.media import cut, make_photo_clip, make_testsrc, picture_in_picture, skimage_photos


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """A small library: camera-motion clips over real photos, plus synthetic patterns, and probe clips.

    library/pan_a.mp4   16 s  chelsea, astronaut, coffee, rocket (4 s each, pan and zoom)
    library/pan_b.mp4   12 s  stereo_motorcycle, immunohistochemistry, coffee (coffee re-used: a near miss)
    library/mandel.mp4  12 s  ffmpeg mandelbrot zoom
    library/bars.mp4     8 s  ffmpeg testsrc2
    probe_a.mp4              seconds 5-11 of pan_a, re-encoded at half size
    probe_other.mp4          ffmpeg "life" pattern, never indexed
    probe_pip.mp4            seconds 2-10 of pan_a at 0.35 of the frame, inset over the "life" pattern (top right)
    """
    root = tmp_path_factory.mktemp("media")
    photos = skimage_photos(root / "photos")
    lib = root / "library"
    lib.mkdir()
    make_photo_clip(lib / "pan_a.mp4", photos[:4], 4.0)
    make_photo_clip(lib / "pan_b.mp4", [photos[4], photos[5], photos[2]], 4.0)
    make_testsrc(lib / "mandel.mp4", 12, pattern="mandelbrot")
    make_testsrc(lib / "bars.mp4", 8, pattern="testsrc2")
    cut(lib / "pan_a.mp4", root / "probe_a.mp4", 5, 6, scale=0.5)
    make_testsrc(root / "probe_other.mp4", 6, pattern="life")
    picture_in_picture(lib / "pan_a.mp4", root / "probe_pip.mp4", 2, 8, frac=0.35, x=0.8, y=0.2)
    return root


@pytest.fixture(scope="session")
def lite_index(tmp_path_factory, media_dir: Path) -> Path:
    """The library of ``media_dir`` indexed with the real encoder (sora-lite0, CPU), once per session. Tests read it;
    a test that changes an index works on a copy."""
    from sora_search import Library

    idx = tmp_path_factory.mktemp("lite") / "idx"
    with Library.open(idx, encoder="sora-lite0", device="cpu") as lib:
        lib.index([media_dir / "library"])
    return idx


@pytest.fixture
def library_copy(media_dir, tmp_path) -> Path:
    """A private copy of the library folder that a test may modify."""
    dst = tmp_path / "library"
    shutil.copytree(media_dir / "library", dst)
    return dst


class FakeGpuFaiss:
    """faiss's GPU API (``StandardGpuResources``, ``GpuClonerOptions``, ``index_cpu_to_gpu``) over CPU copies.

    faiss-cpu has none of it, so this is how the logic around a GPU index (when copies are made, which copy a
    search reads, what is saved) is tested without a GPU; ``-m gpu`` tests run the real thing. Each IVF "GPU copy"
    is a ``faiss.clone_index`` of the CPU index at copy time, wrapped to count its searches; a flat index (the
    k-means assigner) is returned as the clone itself, since faiss takes it as an ``Index``.
    """

    def __init__(self) -> None:
        self.copies: list[object] = []
        self.searches = 0
        self.resources = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeGpuFaiss:
        import faiss

        fake = self

        class StandardGpuResources:
            def __init__(self) -> None:
                fake.resources += 1

        class GpuClonerOptions:
            use_cuvs = True

        class GpuCopy:
            def __init__(self, index: object) -> None:
                self.index = index

            def search(self, x: object, k: int) -> object:
                fake.searches += 1
                return self.index.search(x, k)  # type: ignore[attr-defined]

        def index_cpu_to_gpu(res: object, gpu: int, index: object, options: object = None) -> object:
            assert isinstance(res, StandardGpuResources) and gpu == 0
            assert options is None or options.use_cuvs is False  # type: ignore[attr-defined]
            clone = faiss.clone_index(index)
            copy = GpuCopy(clone) if isinstance(clone, faiss.IndexIVF) else clone
            fake.copies.append(copy)
            return copy

        monkeypatch.setattr(faiss, "StandardGpuResources", StandardGpuResources, raising=False)
        monkeypatch.setattr(faiss, "GpuClonerOptions", GpuClonerOptions, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", index_cpu_to_gpu, raising=False)
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
        monkeypatch.setattr("sora_search.index.gpu._gpu_resources", {})
        return self

    def ivf_copies(self) -> list[object]:
        import faiss

        return [c for c in self.copies if not isinstance(c, faiss.Index)]


@pytest.fixture
def fake_gpu_faiss(monkeypatch: pytest.MonkeyPatch) -> FakeGpuFaiss:
    return FakeGpuFaiss().install(monkeypatch)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PgServer]:
    """One throwaway PostgreSQL server for the session (tests/pg.py). Skips when it cannot be started here, and
    fails instead when $SORA_SEARCH_REQUIRE_POSTGRES=1 (CI)."""
    why = pg.missing()
    if why is not None:
        if os.environ.get(pg.REQUIRE_ENV) == "1":
            pytest.fail(f"{pg.REQUIRE_ENV}=1 but {why}")
        pytest.skip(why)
    server = pg.PgServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: pg.PgServer) -> str:
    """A fresh, empty PostgreSQL database of its own for this test."""
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Run the test on each catalogue: None = SQLite in the index folder (the default); for ``postgres`` the URL of a
    fresh database, also set as $SORA_SEARCH_DB so that every index, CLI call and subprocess of the test uses it."""
    if request.param == "sqlite":
        monkeypatch.delenv("SORA_SEARCH_DB", raising=False)
        return None
    url: str = request.getfixturevalue("pg_url")
    monkeypatch.setenv("SORA_SEARCH_DB", url)
    return url
