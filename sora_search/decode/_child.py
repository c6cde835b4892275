"""Entry point of the decode worker's child process: :func:`main`, which
:class:`sora_search.decode.worker.DecodeWorker` starts as ``python -c "<CHILD_BOOT>" FD`` (see ``CHILD_BOOT``), FD
being the child's end of the socket pair it set up.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from sora_search.decode.worker import _child_main


def main() -> None:
    _child_main(Connection(int(sys.argv[1])))
