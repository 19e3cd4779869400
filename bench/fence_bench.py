"""What the lease-epoch fence adds to a SQLite commit (issue 19, item 12).

One small event batch committed alone (``Writer.commit(alone=True)``: written inline, as a response running by
itself writes), with and without its fence, 1,000 commits per round, 12 rounds alternating which goes first.
Prints the median microseconds per commit of each. Run: ``.venv/bin/python bench/fence_bench.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

from respd.ids import new_id
from respd.store.batch import Batch, ResponseHead
from respd.store.store import Store

ROUNDS = 12
COMMITS = 1000


async def main() -> None:
    store = Store(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/fence.db")
    await store.open()
    rids = [new_id("resp") for _ in range(50)]
    rows = Batch()
    for rid in rids:
        rows.new_response(ResponseHead(rid, "t", "m", 1, None, False, None), "in_progress", b"{}", [])
    await store.writer.commit(rows)
    seq = dict.fromkeys(rids, 0)
    took: dict[bool, list[float]] = {True: [], False: []}
    for n in range(ROUNDS):
        for fenced in (True, False) if n % 2 else (False, True):
            start = time.perf_counter()
            for i in range(COMMITS):
                rid = rids[i % len(rids)]
                seq[rid] += 1
                batch = Batch()
                if fenced:
                    batch.fence(rid, 0)
                batch.log(rid, [(seq[rid], b'{"type":"response.output_text.delta","delta":"x"}')])
                await store.writer.commit(batch, alone=True)
            took[fenced].append((time.perf_counter() - start) / COMMITS * 1e6)
    await store.close()
    for fenced in (False, True):
        print(f"{'fenced' if fenced else 'plain '}: median {statistics.median(took[fenced]):.1f} µs per commit")


if __name__ == "__main__":
    asyncio.run(main())
