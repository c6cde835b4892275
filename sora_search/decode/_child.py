"""Entry point of the decode worker's child process: ``python -m sora_search.decode._child FD``.

FD is the child's end of a socket pair set up by :class:`sora_search.decode.worker.DecodeWorker`.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from sora_search.decode.worker import _child_main

if __name__ == "__main__":
    _child_main(Connection(int(sys.argv[1])))
