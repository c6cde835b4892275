"""Finding videos by content and extension, fingerprints, and the change plan (new, changed, moved, removed)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from sora_search import containers, scan
from tests.media import make_testsrc


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_testsrc(tmp_path_factory.mktemp("scan") / "src.mp4", 2, size=(64, 48), fps=10)


def test_sniff_recognises_containers():
    assert scan.sniff_video(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00")
    assert not scan.sniff_video(b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00")  # audio-only MP4
    assert scan.sniff_video(b"\x1a\x45\xdf\xa3" + b"\x00" * 8)
    assert scan.sniff_video(b"RIFF\x00\x00\x00\x00AVI LIST")
    assert scan.sniff_video(bytes([0x47] + [0] * 187) * 3 + b"\x47")
    assert not scan.sniff_video(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    assert not scan.sniff_video(b"hello world, not a video")


def test_one_signature_table_decides_video_and_names_the_rest():
    pad = b"\x00" * 16
    for magic, _ in containers.VIDEO_MAGIC:
        assert scan.sniff_video(magic + pad) and containers.not_video_kind(magic + pad) is None
    for magic, kind in containers.STILL_IMAGES + containers.OTHER_KINDS:
        assert not scan.sniff_video(magic + pad) and containers.not_video_kind(magic + pad) == kind
    for form in (b"WEBP", b"WAVE"):
        assert not scan.sniff_video(b"RIFF\x00\x00\x00\x00" + form + pad)
    assert containers.still_image(b"RIFF\x00\x00\x00\x00WEBP" + pad) == "WebP image"
    assert containers.iso_bmff(b"\x00\x00\x00\x18ftypM4A ") and not scan.sniff_video(b"\x00\x00\x00\x18ftypM4A ")


def test_walk_finds_videos_by_content_and_extension(tmp_path, clip):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(clip, tmp_path / "a.mp4")
    shutil.copy(clip, tmp_path / "sub" / "deeper" / "camera_dump.bin")      # video without a video extension
    (tmp_path / "sub" / "notes.txt").write_text("not a video")
    (tmp_path / "sub" / "fake.mp4").write_text("not a video either")         # claims to be one: kept, will fail
    (tmp_path / ".hidden").mkdir()
    shutil.copy(clip, tmp_path / ".hidden" / "skip.mp4")
    os.symlink(tmp_path / "missing.mp4", tmp_path / "broken.mp4")
    os.symlink(tmp_path / "sub", tmp_path / "sub" / "loop")                   # directory loop
    found = scan.walk([tmp_path])
    names = sorted(os.path.relpath(f.path, tmp_path) for f in found.files)
    assert names == ["a.mp4", "sub/deeper/camera_dump.bin", "sub/fake.mp4"]
    assert [(os.path.basename(p.path), p.reason) for p in found.problems] == [("broken.mp4", "broken symbolic link")]


def test_walk_reports_a_named_file_that_is_not_a_video(tmp_path, clip):
    # Found in a folder, such a file is passed over; named by the caller, it is reported (never skipped in silence).
    (tmp_path / "notes.txt").write_text("not a video")
    (tmp_path / "blob.dat").write_bytes(b"\x00\x01" * 64)
    shutil.copy(clip, tmp_path / "camera_dump.bin")
    assert scan.walk([tmp_path]).problems == ()
    found = scan.walk([tmp_path / "notes.txt", tmp_path / "blob.dat", tmp_path / "camera_dump.bin"])
    assert [os.path.basename(f.path) for f in found.files] == ["camera_dump.bin"]
    assert [(os.path.basename(p.path), p.reason) for p in found.problems] == [
        ("blob.dat", "not a video"), ("notes.txt", "not a video (text file)")]


def test_walk_excludes_index_dir_and_rejects_missing_paths(tmp_path, clip):
    (tmp_path / "idx").mkdir()
    shutil.copy(clip, tmp_path / "idx" / "x.mp4")
    assert scan.walk([tmp_path], exclude=[tmp_path / "idx"]).files == ()
    with pytest.raises(FileNotFoundError):
        scan.walk([tmp_path / "nope"])


def test_fingerprint_tracks_content_not_name(tmp_path, clip):
    a = shutil.copy(clip, tmp_path / "a.mp4")
    b = shutil.copy(clip, tmp_path / "b.mp4")
    assert scan.fingerprint(a) == scan.fingerprint(b)
    with open(b, "ab") as f:
        f.write(b"\x00")
    assert scan.fingerprint(a) != scan.fingerprint(b)


@dataclass
class Known:
    id: int
    path: str
    size: int
    mtime: float
    fingerprint: str
    status: str = "indexed"


def test_plan_classifies_every_kind_of_change(tmp_path, clip):
    same = Path(shutil.copy(clip, tmp_path / "same.mp4"))
    edited = Path(shutil.copy(clip, tmp_path / "edited.mp4"))
    moved_to = Path(shutil.copy(clip, tmp_path / "renamed.mp4"))
    new = tmp_path / "new.mp4"
    make_testsrc(new, 1, size=(64, 48), fps=10, pattern="smptebars")
    fp = scan.fingerprint(clip)
    st = same.stat()
    known = [
        Known(1, str(same), st.st_size, st.st_mtime, fp),
        Known(2, str(edited), st.st_size, st.st_mtime - 100, "b2:old"),
        Known(3, str(tmp_path / "old_name.mp4"), st.st_size, 0.0, fp),   # gone from disk: renamed.mp4 is it
        Known(4, str(tmp_path / "deleted.mp4"), 10, 0.0, "b2:gone"),
    ]
    p = scan.plan(scan.walk([tmp_path]), known, [str(tmp_path)])
    assert [k.id for k in p.unchanged] == [1]
    assert [(e.path, k.id) for e, _, k in p.changed] == [(str(edited), 2)]
    assert [(e.path, k.id) for e, k in p.moved] == [(str(moved_to), 3)]
    assert [e.path for e, _ in p.new] == [str(new)]
    assert [k.id for k in p.removed] == [4]


def test_plan_skips_unchanged_failures_unless_asked(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    st = bad.stat()
    known = [Known(1, str(bad), st.st_size, st.st_mtime, scan.fingerprint(bad), status="failed")]
    assert [k.id for k in scan.plan(scan.walk([tmp_path]), known, [str(tmp_path)]).failed_before] == [1]
    again = scan.plan(scan.walk([tmp_path]), known, [str(tmp_path)], retry_failed=True)
    assert [e.path for e, _, _ in again.changed] == [str(bad)]


def test_plan_encodes_again_the_unchanged_videos_asked_for(tmp_path, clip):
    a, b = (Path(shutil.copy(clip, tmp_path / name)) for name in ("a.mp4", "b.mp4"))
    fp = scan.fingerprint(clip)
    known = [Known(i, str(f), f.stat().st_size, f.stat().st_mtime, fp) for i, f in ((1, a), (2, b))]
    p = scan.plan(scan.walk([tmp_path]), known, [str(tmp_path)], reencode={2, 7})
    assert [k.id for k in p.unchanged] == [1]
    assert [(e.path, f, k.id) for e, f, k in p.changed] == [(str(b), fp, 2)] and p.to_encode == [(p.changed[0][0], fp)]


def test_plan_removes_only_at_or_under_the_roots_and_moves_from_anywhere(tmp_path, clip):
    lib, sibling, elsewhere = tmp_path / "lib", tmp_path / "libx", tmp_path / "elsewhere"
    lib.mkdir()
    moved_to = Path(shutil.copy(clip, lib / "renamed.mp4"))
    fp = scan.fingerprint(clip)
    known = [
        Known(5, str(sibling / "gone.mp4"), 10, 0.0, "b2:x"),            # /lib is not a prefix of /libx/...
        Known(4, str(elsewhere / "old_name.mp4"), 10, 0.0, fp),          # outside the root, gone: the move's origin
        Known(3, str(lib / "sub" / "gone.mp4"), 10, 0.0, "b2:y"),
        Known(2, str(lib / "gone.mp4"), 10, 0.0, "b2:z"),
        Known(2, str(lib / "gone.mp4"), 10, 0.0, "b2:z"),                # the same record twice counts once
    ]
    p = scan.plan(scan.walk([lib]), known, [str(lib)])
    assert [(e.path, k.id) for e, k in p.moved] == [(str(moved_to), 4)]
    assert [k.id for k in p.removed] == [2, 3]                           # id order, whatever order came in
    assert p.new == [] and p.changed == [] and p.unchanged == []


def test_plan_counts_a_root_that_is_a_stored_file(tmp_path, clip):
    root = Path(shutil.copy(clip, tmp_path / "one.mp4"))
    st = root.stat()
    known = [Known(7, str(root), st.st_size, st.st_mtime - 100, "b2:older")]
    p = scan.plan(scan.walk([root]), known, [str(root)])
    assert [(e.path, k.id) for e, _, k in p.changed] == [(str(root), 7)]
    assert p.new == [] and p.removed == []


def test_plan_over_several_roots_lists_removals_in_id_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    known = [Known(1, str(b / "x.mp4"), 1, 0.0, "b2:1"), Known(2, str(a / "y.mp4"), 1, 0.0, "b2:2"),
             Known(3, str(b / "z.mp4"), 1, 0.0, "b2:3")]
    p = scan.plan(scan.walk([b, a]), known, [str(b), str(a)])
    assert [k.id for k in p.removed] == [1, 2, 3]


def test_under_roots_is_an_exact_prefix_or_the_root_itself():
    known = [Known(4, "/a/bc/x.mp4", 1, 0.0, "b2:4"), Known(3, "/a/b/c/y.mp4", 1, 0.0, "b2:3"),
             Known(2, "/a/b", 1, 0.0, "b2:2"), Known(1, "/a/b/x.mp4", 1, 0.0, "b2:1"),
             Known(5, "/A/b/z.mp4", 1, 0.0, "b2:5")]
    assert [v.id for v in scan.under_roots(known, ["/a/b"])] == [1, 2, 3]
    assert [v.id for v in scan.under_roots(known, ["/a/b/x.mp4", "/a/b/"])] == [1, 3]
    assert [v.id for v in scan.under_roots(known, ["/"])] == [1, 2, 3, 4, 5]
    assert scan.under_roots(known, []) == []
