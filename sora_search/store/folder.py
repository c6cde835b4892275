"""The store of an index folder: its catalogue found (``--db``, ``$SORA_SEARCH_DB``, else ``sora.db`` inside), opened,
and the folder made for the FAISS and lock files."""

from __future__ import annotations

from pathlib import Path

from sora_search.errors import IndexNotFound, StoreError
from sora_search.store.catalogue import DB_NAME, Catalogue
from sora_search.store.store import Store


def open_index_store(location: Path, db: str | Path | Catalogue | None, *, create: bool) -> Store:
    """The store of the index folder ``location`` (see :meth:`Catalogue.resolve`); the folder is made when missing
    (it holds the FAISS file and the lock file) once the store is known to open.

    Raises:
        IndexNotFound: ``create=False`` and no catalogue there yet. StoreError: the folder cannot be made, or the
        store cannot be opened (see :meth:`sora_search.store.Store.open`).
    """
    catalogue = Catalogue.resolve(location, db)
    if catalogue.path is not None and not catalogue.path.exists() and not create:
        where = location if catalogue.path == location / DB_NAME else catalogue.path
        raise IndexNotFound(f"no index at {where}: run `sora-search index PATH` first "
                            "(or pass --index / set SORA_SEARCH_INDEX to where it is)")
    if catalogue.path == location / DB_NAME:
        _make_folder(location)
    store = Store.open(catalogue, create=create)
    try:
        _make_folder(location)
    except StoreError:
        store.close()
        raise
    return store


def _make_folder(location: Path) -> None:
    try:
        location.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the index folder {location}: {exc.strerror or exc}") from None
