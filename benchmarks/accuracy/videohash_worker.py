"""Hash videos with ``videohash`` and print one JSON object per video on stdout.

Runs inside the baselines venv (``install_baselines.sh``), not the engine's: videohash 3.0.1 calls
``PIL.Image.ANTIALIAS``, which Pillow removed in 10.0, so it needs a Pillow the engine's venv must not have.
Standard library and videohash only; ``baselines.VideoHashSystem`` is the caller.

    python videohash_worker.py --probe            # {"videohash": "3.0.1", "pillow": "9.5.0"}
    python videohash_worker.py A.mp4 B.mp4        # {"path": "A.mp4", "hash": "0b0110..."} or {"path", "error"}
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings


def _summary(exc: Exception) -> str:
    """First and last line of an error: videohash puts the whole ffmpeg command and banner in between."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if len(lines) <= 2:
        return " ".join(lines)
    return f"{lines[0]} ... {lines[-1]}"


def main(argv: list[str]) -> int:
    # Pillow 9.5 warns on every ANTIALIAS use; stderr is for real errors here.
    warnings.simplefilter("ignore", DeprecationWarning)
    if argv == ["--probe"]:
        from importlib.metadata import version

        from PIL import Image
        from videohash import VideoHash  # noqa: F401  (the import is the check)

        if not hasattr(Image, "ANTIALIAS"):
            print(f"videohash needs Pillow<10 (PIL.Image.ANTIALIAS), this venv has Pillow {version('pillow')}",
                  file=sys.stderr)
            return 1
        print(json.dumps({"videohash": version("videohash"), "pillow": version("pillow")}))
        return 0
    from videohash import VideoHash

    for path in argv:
        # VideoHash copies the video and writes frames, a collage and tiles under storage_path; a private
        # temporary folder per video keeps runs apart and is removed even when hashing fails.
        with tempfile.TemporaryDirectory(prefix="videohash-") as tmp:
            try:
                vh = VideoHash(path=path, storage_path=tmp + "/")
                out = {"path": path, "hash": vh.hash}
            except Exception as exc:  # one bad file is reported, the others still hashed
                out = {"path": path, "error": f"{type(exc).__name__}: {_summary(exc)}"}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
