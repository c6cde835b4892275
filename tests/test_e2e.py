"""End to end with the real Sora encoder, through the CLI: index, query a re-encoded downscaled excerpt, update."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sora_search.cli import cli
from sora_search.params import QueryParams

DEFAULT_MIN_SCORE = QueryParams().min_score


@pytest.fixture(scope="module")
def indexed(media_dir, tmp_path_factory):
    idx = tmp_path_factory.mktemp("e2e") / "idx"
    result = CliRunner().invoke(cli, ["index", str(media_dir / "library"), "--index", str(idx)])
    assert result.exit_code == 0, result.output
    assert "4 added" in result.output and "0 failed" in result.output
    return idx


def _query(idx, probe, *extra):
    result = CliRunner().invoke(cli, ["query", str(probe), "--index", str(idx), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_excerpt_comes_first_with_spans_near_the_truth(indexed, media_dir):
    data = _query(indexed, media_dir / "probe_a.mp4")           # seconds 5-11 of pan_a.mp4, at half size
    top = data["matches"][0]
    assert top["path"] == str(media_dir / "library" / "pan_a.mp4")
    seg = top["segments"][0]
    assert abs(seg["query_start_s"] - 0) <= 2 and abs(seg["query_end_s"] - 6) <= 2, seg
    assert abs(seg["ref_start_s"] - 5) <= 2 and abs(seg["ref_end_s"] - 11) <= 2, seg
    assert top["score"] >= DEFAULT_MIN_SCORE


def test_unrelated_clip_scores_clearly_lower(indexed, media_dir):
    copy = _query(indexed, media_dir / "probe_a.mp4")["matches"][0]["score"]
    assert _query(indexed, media_dir / "probe_other.mp4")["matches"] == []     # nothing above the default
    everything = _query(indexed, media_dir / "probe_other.mp4", "--min-score", "-1")["matches"]
    best_unrelated = max((m["score"] for m in everything), default=0.0)
    assert copy - best_unrelated >= 0.25, (copy, best_unrelated)


def test_picture_in_picture_is_found_through_its_inset(indexed, media_dir):
    from sora_search import Library
    from sora_search.embed.views import INSET, VIEW_SETS

    probe = media_dir / "probe_pip.mp4"        # seconds 2-10 of pan_a at 0.35 of the frame, top right, over "life"
    top = _query(indexed, probe)["matches"][0]
    assert top["path"] == str(media_dir / "library" / "pan_a.mp4") and top["score"] >= DEFAULT_MIN_SCORE, top
    seg = top["segments"][0]
    assert abs(seg["ref_start_s"] - 2) <= 2 and abs(seg["ref_end_s"] - 10) <= 2, seg
    # The quarter-grid windows alone see the inset mixed with the pattern around it: the found inset is what lifts it.
    without_inset = [v for v in VIEW_SETS["thorough"] if v != INSET]
    with Library.open(indexed, create=False) as lib:
        windows = lib.query(probe, views=without_inset, min_score=-1.0).matches
    pan_a = [m.score for m in windows if m.path.endswith("pan_a.mp4")]
    assert pan_a and top["score"] - pan_a[0] >= 0.1, (top["score"], pan_a)


def test_table_output_shows_spans_in_mmss(indexed, media_dir):
    result = CliRunner().invoke(cli, ["query", str(media_dir / "probe_a.mp4"), "--index", str(indexed)])
    first = result.output.splitlines()[1].split()
    assert first[1].startswith("00:0") and first[2].startswith("00:0") and first[3].endswith("pan_a.mp4")


def test_reindex_encodes_nothing_and_deletions_disappear(media_dir, library_copy, tmp_path, monkeypatch):
    idx = tmp_path / "idx"
    runner = CliRunner()
    assert runner.invoke(cli, ["-q", "index", str(library_copy), "--index", str(idx)]).exit_code == 0
    from sora_search.decode import DecodeWorker

    monkeypatch.setattr(DecodeWorker, "open", lambda *a, **k: pytest.fail("decoded an unchanged file"))
    again = runner.invoke(cli, ["index", str(library_copy), "--index", str(idx)])
    assert again.exit_code == 0 and "0 added, 0 updated, 4 unchanged" in again.output
    monkeypatch.undo()
    (library_copy / "pan_a.mp4").unlink()
    gone = runner.invoke(cli, ["index", str(library_copy), "--index", str(idx)])
    assert "1 removed" in gone.output
    matches = _query(idx, media_dir / "probe_a.mp4", "--min-score", "-1")["matches"]
    assert all(not m["path"].endswith("pan_a.mp4") for m in matches)


def test_a_postgresql_catalogue_gives_the_same_answers(indexed, media_dir, pg_url, tmp_path):
    """`index --db URL` then `query`: the answers of the SQLite default, from this folder's FAISS file and from
    another machine's empty folder (its FAISS copy rebuilt from the catalogue); the password is never shown."""
    runner = CliRunner()
    url = pg_url.replace("postgres@", "postgres:hush@")  # the test server trusts local users: the password is unused
    idx, elsewhere = tmp_path / "idx", tmp_path / "other_machine"
    result = runner.invoke(cli, ["index", str(media_dir / "library"), "--index", str(idx), "--db", url])
    assert result.exit_code == 0, result.output
    assert "4 added" in result.output and not (idx / "sora.db").exists() and (idx / "vectors.faiss").exists()
    probe = ("--min-score", "-1", "--views", "fast")  # every video's score, from one cheap view
    expected = _query(indexed, media_dir / "probe_a.mp4", *probe)
    assert len(expected["matches"]) >= 2
    assert _query(idx, media_dir / "probe_a.mp4", *probe, "--db", url) == expected
    assert _query(elsewhere, media_dir / "probe_a.mp4", *probe, "--db", url) == expected
    info = runner.invoke(cli, ["info", "--index", str(idx), "--db", url])
    assert info.exit_code == 0 and "PostgreSQL postgresql+psycopg://postgres:***@" in info.output, info.output
    assert "hush" not in info.output
    assert runner.invoke(cli, ["check", "--index", str(idx), "--db", url]).exit_code == 0
    upgraded = runner.invoke(cli, ["upgrade", "--index", str(idx)], env={"SORA_SEARCH_DB": url})
    assert upgraded.exit_code == 0 and "schema already at" in upgraded.output, upgraded.output
    # flag > env: the flag's catalogue is used even with another one in $SORA_SEARCH_DB
    bad = f"postgresql+psycopg://postgres:hush@/nowhere?host={tmp_path}/nosocket"
    flagged = runner.invoke(cli, ["query", str(media_dir / "probe_a.mp4"), "--index", str(idx), "--json", "--views",
                                  "fast", "--db", url], env={"SORA_SEARCH_DB": bad})
    assert flagged.exit_code == 0, flagged.output
    unreachable = runner.invoke(cli, ["info", "--index", str(idx)], env={"SORA_SEARCH_DB": bad})
    assert unreachable.exit_code == 1 and "postgres:***@/nowhere" in unreachable.output, unreachable.output
    assert "hush" not in unreachable.output and "Traceback" not in unreachable.output
