"""A reader in a process of its own: reads the newest committed features of a store in a loop
(``Store.open_reader``) until a stop file appears, then prints what it saw as JSON — every
observation's stored item ids, and the file each came from. It starts reading once the store
has published its first snapshot.

    python -m tests.read_during_flow STORE STOP_FILE [PAUSE_S]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from enrich import snapshots
from enrich.store import Store


def main() -> None:
    store, stop = sys.argv[1], Path(sys.argv[2])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.02
    seen: list[dict] = []
    while snapshots.newest(store) is None and not stop.exists():  # the flow publishes the
        time.sleep(0.05)  # first one when it starts; the file itself is the writer's
    while not stop.exists():
        reader = Store.open_reader(store)
        try:
            has = reader.scalar(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'item_profiles'"
            )
            ids = (
                [r[0] for r in reader.con.execute("SELECT item_id FROM item_profiles").fetchall()]
                if has
                else []
            )
            seen.append({"file": reader.path, "ids": sorted(ids)})
        finally:
            reader.close()
        time.sleep(pause)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
