"""Shared fixtures: synthetic clips made once per test session with ffmpeg (never committed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
