"""A batch-mode run to kill: ``profile_items`` over N synthetic items against a batch server.

python -m tests.run_batch_job BASE_URL STORE N_ITEMS
"""

from __future__ import annotations

import sys

import enrich
from enrich.config import EnrichSettings
from enrich.testing import HashEmbedder
from tests.test_batches import SETTINGS, catalogue


def main() -> None:
    url, store, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    enrich.profile_items(
        catalogue(n),
        llm=f"{url}#m",
        embedder=HashEmbedder(),
        store=store,
        settings=EnrichSettings(**SETTINGS),
    )


if __name__ == "__main__":
    main()
