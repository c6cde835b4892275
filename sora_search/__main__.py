"""``python -m sora_search`` is the ``sora-search`` command."""

from sora_search.cli import run

if __name__ == "__main__":
    run()
