"""What every system in the accuracy benchmark answers with, engine and baselines alike.

The runner (``run.py``) drives any :class:`System` the same way: ``index`` the references once, ``query`` each
query clip, ``close``. Standard library only, so a baseline adapter can import it without the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Prediction:
    """One reference a system says a query copies, and how sure it is.

    Attributes:
        reference: the library video, as :func:`reference_name` names it: ``"r012.mp4"`` for ``refs/r012.mp4``.
        score: higher means more confident; only the order matters across one system's predictions.
        query_span: (start_s, end_s) of the copied part in the query, for systems that localise; else None.
        ref_span: (start_s, end_s) of the copied part in the reference, for systems that localise; else None.
    """

    reference: str
    score: float
    query_span: tuple[float, float] | None = None
    ref_span: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.reference:
            raise ValueError("Prediction.reference is empty; give the reference's file name")
        for name in ("query_span", "ref_span"):
            span = getattr(self, name)
            if span is not None and not (len(span) == 2 and span[0] <= span[1]):
                raise ValueError(f"Prediction.{name} must be (start_s, end_s) with start_s <= end_s, got {span!r}")


def reference_name(path: Path) -> str:
    """What a prediction calls a library video: a reference by its file name, as the truth does (``refs/t012.mp4``
    -> ``t012.mp4``), any other video by its folder and file name (``filler/t012.mp4``). The split benchmark names
    filler like references (``t000.mp4`` in both folders), so the file name alone would take a filler video for the
    reference it shares a name with."""
    return path.name if path.parent.name == "refs" else f"{path.parent.name}/{path.name}"


class System(Protocol):
    """A copy-detection system under test.

    ``query`` returns every indexed reference with a score (or the best ~20), best first; a query the system
    cannot read returns ``[]`` and a reference it cannot read is left out of the index, both logged.
    An optional ``threshold: float | None`` attribute is the system's own decision score, when it has one.
    """

    name: str

    def index(self, refs: list[Path]) -> None: ...

    def query(self, path: Path) -> list[Prediction]: ...

    def close(self) -> None: ...
