"""The web service in process (FastAPI's TestClient) and as a real ``sora-search serve`` process: every endpoint,
bad input as one-line JSON errors with 4xx codes, auth, limits, and no upload left behind."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from click.testing import CliRunner

from sora_search.cli import cli
from tests.media import cut
from tests.serving import build_index, needs_serve, server

pytestmark = needs_serve


@pytest.fixture(scope="module")
def idx(media_dir, tmp_path_factory):
    return build_index(media_dir, tmp_path_factory.mktemp("serve"))


def _client(idx, **settings):
    from fastapi.testclient import TestClient

    from sora_search.serve.app import Settings, create_app

    return TestClient(create_app(Settings(index=idx, **settings)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(idx):
    with _client(idx) as c:
        yield c


def _query(client, path, name=None, **form):
    with open(path, "rb") as f:
        return client.post("/api/query", files={"file": (name or path.name, f, "video/mp4")},
                           data={k: str(v) for k, v in form.items()})


def _is_error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and body["error"]
    return body["error"]


def test_health_info_and_docs(client, idx):
    assert client.get("/healthz").json() == {"status": "ok"}
    info = client.get("/api/info").json()
    assert info["videos"] == 4 and info["encoder"] == "tiny" and info["location"] == str(idx.absolute())
    assert client.get("/openapi.json").json()["paths"]["/api/query"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_query_is_the_cli_json_plus_video_ids(client, media_dir, idx):
    r = _query(client, media_dir / "probe_a.mp4", k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "probe_a.mp4"
    top = body["matches"][0]
    assert top["path"].endswith("pan_a.mp4") and top["score"] > 0.3 and top["segments"]
    assert client.get(f"/api/videos/{top['video_id']}").json()["path"] == top["path"]
    cli_json = json.loads(CliRunner().invoke(cli, ["query", str(media_dir / "probe_a.mp4"), "--index", str(idx),
                                                   "-k", "3", "--json"]).output)
    assert [m["path"] for m in cli_json["matches"]] == [m["path"] for m in body["matches"]]
    assert [m["score"] for m in cli_json["matches"]] == [m["score"] for m in body["matches"]]
    assert not any(client.app.state.uploads.iterdir())


def test_videos_paginate_filter_and_serve_thumbnails_and_ranges(client):
    everything = client.get("/api/videos").json()
    assert everything["total"] == 4
    page = client.get("/api/videos", params={"offset": 1, "limit": 2}).json()
    assert [v["id"] for v in page["videos"]] == [v["id"] for v in everything["videos"][1:3]]
    pans = client.get("/api/videos", params={"q": "PAN_"}).json()
    assert sorted(v["name"] for v in pans["videos"]) == ["pan_a.mp4", "pan_b.mp4"]
    vid = pans["videos"][0]["id"]
    thumb = client.get(f"/api/videos/{vid}/thumbnail", params={"t": 3.5})
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:2] == b"\xff\xd8"
    ranged = client.get(f"/api/videos/{vid}/stream", headers={"Range": "bytes=10-109"})
    assert ranged.status_code == 206 and len(ranged.content) == 100
    assert ranged.headers["content-range"].startswith("bytes 10-109/")


@pytest.mark.parametrize("url", ["/api/videos/999999", "/api/videos/999999/stream", "/api/videos/999999/thumbnail",
                                 "/api/videos/..%2f..%2fetc%2fpasswd/stream", "/api/videos/%2e%2e/stream",
                                 "/api/videos/1%2f..%2f..%2fsora.db/stream", "/api/videos/-1/stream",
                                 "/static/..%2f..%2fapp.py"])
def test_unknown_ids_and_traversal_are_404_or_422(client, url):
    r = client.get(url)
    assert r.status_code in (404, 422)
    _is_error(r, r.status_code)


def test_bad_uploads_are_one_line_4xx_errors(client, media_dir, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    assert "not a video container" in _is_error(_query(client, text), 415)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _is_error(_query(client, empty), 400)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((media_dir / "probe_a.mp4").read_bytes()[:2000])
    assert "broken.mp4" in (r := _query(client, broken)).text and str(tmp_path) not in r.text
    _is_error(r, 422)
    blip = cut(media_dir / "library" / "pan_a.mp4", tmp_path / "blip.mp4", 3, 0.2)
    r = _query(client, blip)
    assert r.status_code == 200 or 400 <= r.status_code < 500
    if r.status_code != 200:
        assert "blip.mp4" in _is_error(r, r.status_code) and str(tmp_path) not in r.text
    assert "file" in _is_error(client.post("/api/query", data={"k": "3"}), 422)
    probe = media_dir / "probe_a.mp4"
    assert "k" in _is_error(_query(client, probe, k=10**9), 422)
    assert "k" in _is_error(_query(client, probe, k="many"), 422)
    assert "views" in _is_error(_query(client, probe, views="sideways"), 422)
    _is_error(_query(client, probe, min_score="nan"), 422)


def test_the_text_check_without_its_reader_is_a_422(client, media_dir, monkeypatch):
    import sora_search.query.text as text

    monkeypatch.setattr(text.shutil, "which", lambda name: None)
    assert "tesseract" in _is_error(_query(client, media_dir / "probe_a.mp4", read_text="true"), 422)
    assert _query(client, media_dir / "probe_a.mp4", read_text="false").status_code == 200
    assert not any(client.app.state.uploads.iterdir())


def test_upload_limit_queue_limit_and_token(idx, media_dir):
    probe = media_dir / "probe_a.mp4"
    with _client(idx, max_upload_mb=0.001) as c:
        assert "limit" in _is_error(_query(c, probe), 413)
    with _client(idx, max_queued=0) as c:
        r = _query(c, probe)
        _is_error(r, 503)
        assert int(r.headers["retry-after"]) > 0
    with _client(idx, token="s3cret") as c:
        assert c.get("/healthz").status_code == 200
        _is_error(c.get("/api/info"), 401)
        _is_error(c.get("/api/info", headers={"Authorization": "Bearer wrong"}), 401)
        assert c.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/videos/1/thumbnail", params={"t": 1, "token": "s3cret"}).status_code == 200


def test_thumbnails_of_removed_videos_go_at_start(idx):
    stale = idx / "thumbs" / "987654" / "0123456789abcdef-1000.jpg"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\xff\xd8old")
    with _client(idx) as c:
        assert c.get("/healthz").status_code == 200
    assert not stale.parent.exists()


def test_cli_refuses_an_open_host_without_token(idx):
    result = CliRunner().invoke(cli, ["serve", "--index", str(idx), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--token" in result.output and "--no-auth" in result.output


def test_cli_names_the_extra_when_it_is_missing(idx, monkeypatch):
    monkeypatch.setattr("sora_search.serve.missing", lambda: ["fastapi"])
    result = CliRunner().invoke(cli, ["serve", "--index", str(idx)])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: serve needs fastapi: pip install 'sora-search[serve]'"


def test_cli_without_an_index_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--index", str(tmp_path / "none")])
    assert result.exit_code == 1 and "sora-search index" in result.output


def test_a_real_server_process_answers(idx, media_dir, tmp_path):
    import httpx

    with server(idx, tmpdir=tmp_path) as url:
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        with open(media_dir / "probe_a.mp4", "rb") as f:
            r = httpx.post(url + "/api/query", files={"file": ("probe_a.mp4", f, "video/mp4")}, timeout=60)
        assert r.status_code == 200 and r.json()["matches"][0]["path"].endswith("pan_a.mp4")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_fifty_concurrent_queries_get_200_or_503_and_leave_no_upload(idx, media_dir, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    data = (media_dir / "probe_a.mp4").read_bytes()
    with server(idx, "--max-queued", "3", tmpdir=tmp_path) as url:
        def ask(n: int) -> httpx.Response:
            return httpx.post(url + "/api/query", files={"file": (f"p{n}.mp4", data, "video/mp4")},
                              data={"views": "fast"}, timeout=120)

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(ask, range(50)))
        codes = sorted({r.status_code for r in answers})
        assert set(codes) <= {200, 503} and 200 in codes, codes
        assert all(int(r.headers["retry-after"]) > 0 for r in answers if r.status_code == 503)
        assert all(r.json()["matches"][0]["path"].endswith("pan_a.mp4") for r in answers if r.status_code == 200)
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# ---------------------------------------------------------------- index jobs, keyframes, duplicates

@pytest.fixture()
def writable(media_dir, tmp_path):
    """An index of the library without pan_a.mp4, which waits in ``incoming/``; both folders under ``tmp_path``."""
    from sora_search import Library

    lib_dir, incoming = tmp_path / "library", tmp_path / "incoming"
    shutil.copytree(media_dir / "library", lib_dir)
    incoming.mkdir()
    shutil.move(lib_dir / "pan_a.mp4", incoming / "pan_a.mp4")
    with Library.open(tmp_path / "idx", encoder="tiny") as lib:
        lib.index([lib_dir])
    return tmp_path


def _wait_for(client, job, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        r = client.get(f"/api/jobs/{job['id']}")
        assert r.status_code == 200, r.text
        job = r.json()
    return job


def test_an_index_job_runs_and_the_video_is_then_found(writable, media_dir):
    with _client(writable / "idx", allow_roots=(writable,)) as c:
        before = _query(c, media_dir / "probe_a.mp4").json()["matches"]
        assert not any(m["path"].endswith("pan_a.mp4") for m in before)
        r = c.post("/api/index", json={"paths": [str(writable / "incoming")]})
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/api/jobs/{r.json()['id']}"
        job = _wait_for(c, r.json())
        assert job["status"] == "done" and job["error"] is None, job
        assert job["summary"]["added"] == [str(writable / "incoming" / "pan_a.mp4")]
        assert job["summary"]["vectors_added"] > 0
        progress = job["progress"]
        assert progress["files_done"] == progress["files_total"] == 1
        assert progress["bytes_done"] == progress["bytes_total"] > 0
        top = _query(c, media_dir / "probe_a.mp4").json()["matches"][0]
        assert top["path"] == str(writable / "incoming" / "pan_a.mp4") and top["video_id"] is not None
        assert c.get("/api/info").json()["videos"] == 4
        _is_error(c.get("/api/jobs/nosuchjob"), 404)


def test_indexing_over_http_is_off_without_roots(client, idx):
    assert "--allow-root" in _is_error(client.post("/api/index", json={"paths": [str(idx.parent)]}), 403)


def test_paths_outside_the_roots_are_refused(writable):
    incoming = writable / "incoming"
    (incoming / "escape").symlink_to(writable / "library", target_is_directory=True)
    (incoming / "escape.mp4").symlink_to(writable / "library" / "bars.mp4")
    with _client(writable / "idx", allow_roots=(incoming,)) as c:
        for path in ["/etc", str(incoming / ".." / "library"), str(incoming / ".." / ".." / ".."),
                     str(incoming / "escape"), str(incoming / "escape" / "bars.mp4"), str(incoming / "escape.mp4")]:
            assert "--allow-root" in _is_error(c.post("/api/index", json={"paths": [path]}), 403), path
        # One bad path refuses the whole request.
        _is_error(c.post("/api/index", json={"paths": [str(incoming), "/etc"]}), 403)
        assert "no such file" in _is_error(c.post("/api/index", json={"paths": [str(incoming / "gone.mp4")]}), 404)
        assert "absolute" in _is_error(c.post("/api/index", json={"paths": ["pan_a.mp4"]}), 422)
        assert not c.app.state.jobs._jobs


@pytest.mark.parametrize("body", ["{", "not json", "[]", "{}", '{"paths": "/tmp"}', '{"paths": []}',
                                  '{"paths": [1]}', '{"paths": [null]}', '{"paths": ["/tmp"], "extra": 1}',
                                  '{"paths": ["/tmp\\u0000x"]}'])
def test_bad_index_bodies_are_one_line_4xx_errors(writable, body):
    with _client(writable / "idx", allow_roots=(writable,)) as c:
        r = c.post("/api/index", content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500
        _is_error(r, r.status_code)
        assert not c.app.state.jobs._jobs


def test_a_second_job_while_one_runs_is_409(writable, monkeypatch):
    import threading

    from sora_search import Library

    release = threading.Event()

    class HeldLibrary:
        @staticmethod
        def open(*args, **kwargs):
            assert release.wait(60)
            return Library.open(*args, **kwargs)

    monkeypatch.setattr("sora_search.serve.jobs.Library", HeldLibrary)
    with _client(writable / "idx", allow_roots=(writable,)) as c:
        first = c.post("/api/index", json={"paths": [str(writable / "incoming")]}).json()
        assert first["status"] in ("queued", "running")
        assert first["id"] in _is_error(c.post("/api/index", json={"paths": [str(writable / "library")]}), 409)
        release.set()
        assert _wait_for(c, first)["status"] == "done"
        again = c.post("/api/index", json={"paths": [str(writable / "incoming")]})
        assert again.status_code == 202
        assert _wait_for(c, again.json())["summary"]["unchanged"] == [str(writable / "incoming" / "pan_a.mp4")]


def test_an_index_run_of_another_process_fails_the_job_with_the_lock_message(writable):
    from sora_search.store.lock import write_lock

    with _client(writable / "idx", allow_roots=(writable,)) as c, write_lock(writable / "idx"):
        r = c.post("/api/index", json={"paths": [str(writable / "incoming")]})
        assert r.status_code == 202
        job = _wait_for(c, r.json())
    assert job["status"] == "failed" and job["summary"] is None
    assert "is being written by" in job["error"] and "\n" not in job["error"]


def test_keyframes_start_at_the_first_second_and_are_bounded(client):
    videos = client.get("/api/videos").json()["videos"]
    for v in videos:
        seconds = client.get(f"/api/videos/{v['id']}/keyframes").json()["seconds"]
        assert seconds and seconds == sorted(seconds) and seconds[0] < 1.0 and len(seconds) <= 10
        few = client.get(f"/api/videos/{v['id']}/keyframes", params={"n": 3}).json()["seconds"]
        assert 1 <= len(few) <= 3 and few[0] == seconds[0]
    pan_a = next(v for v in videos if v["name"] == "pan_a.mp4")
    # pan_a shows four photos, 4 s each: four keyframes land one on each.
    four = client.get(f"/api/videos/{pan_a['id']}/keyframes", params={"n": 4}).json()["seconds"]
    assert sorted({int(t // 4) for t in four}) == [0, 1, 2, 3], four
    _is_error(client.get("/api/videos/999999/keyframes"), 404)
    _is_error(client.get(f"/api/videos/{pan_a['id']}/keyframes", params={"n": 0}), 422)
    _is_error(client.get(f"/api/videos/{pan_a['id']}/keyframes", params={"n": 10**6}), 422)


def test_duplicates_are_the_cli_json_plus_video_ids(client, idx):
    r = client.get("/api/duplicates")
    assert r.status_code == 200, r.text
    body = r.json()
    cli_json = json.loads(CliRunner().invoke(cli, ["-q", "dupes", "--index", str(idx), "--json"]).stdout)
    ids = {v["path"]: v["id"] for v in client.get("/api/videos").json()["videos"]}
    assert [(p["a"], p["b"], p["score"]) for p in body["pairs"]] == \
        [(p["a"], p["b"], p["score"]) for p in cli_json["pairs"]]
    assert all(p["a_id"] == ids[p["a"]] and p["b_id"] == ids[p["b"]] for p in body["pairs"])
    assert [g["members"] for g in body["groups"]] == [g["members"] for g in cli_json["groups"]]
    assert "keep" in _is_error(client.get("/api/duplicates", params={"keep": "biggest"}), 422)
    _is_error(client.get("/api/duplicates", params={"min_score": 7}), 422)


def test_a_server_on_a_postgresql_catalogue_indexes_and_answers_as_the_cli(media_dir, tmp_path, pg_url):
    import httpx

    from sora_search import Library

    lib_dir, incoming = tmp_path / "library", tmp_path / "incoming"
    shutil.copytree(media_dir / "library", lib_dir)
    incoming.mkdir()
    shutil.move(lib_dir / "pan_a.mp4", incoming / "pan_a.mp4")
    with Library.open(tmp_path / "idx", encoder="tiny", db=pg_url) as lib:
        lib.index([lib_dir])
    assert not (tmp_path / "idx" / "sora.db").exists()
    with server(tmp_path / "idx", "--db", pg_url, "--allow-root", str(tmp_path)) as url:
        r = httpx.post(url + "/api/index", json={"paths": [str(incoming)]}, timeout=30)
        assert r.status_code == 202, r.text
        job = r.json()
        deadline = time.monotonic() + 120
        while job["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
            job = httpx.get(url + f"/api/jobs/{job['id']}", timeout=30).json()
        assert job["status"] == "done", job
        assert httpx.get(url + "/api/info", timeout=30).json()["videos"] == 4
        with open(media_dir / "probe_a.mp4", "rb") as f:
            body = httpx.post(url + "/api/query", files={"file": ("probe_a.mp4", f, "video/mp4")},
                              data={"k": "3"}, timeout=60).json()
    assert body["matches"][0]["path"] == str(incoming / "pan_a.mp4")
    cli_json = json.loads(CliRunner().invoke(cli, ["query", str(media_dir / "probe_a.mp4"), "--index",
                                                   str(tmp_path / "idx"), "--db", pg_url, "-k", "3", "--json"]).output)
    assert [(m["path"], m["score"]) for m in cli_json["matches"]] == [(m["path"], m["score"]) for m in body["matches"]]
