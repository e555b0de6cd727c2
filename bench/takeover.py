"""`python -m bench takeover`: how long the mirror's listing waits behind a write-back backlog.

After a takeover the new leader finds the results the old one had not written yet and the
write-back sends them at the base's full rate, while the mirror's listing (new jobs) shares the
same limiter at a lower priority. This runs the real `AirtableClient` against the Airtable
simulator (5 requests/s, 30 s penalty): `--results` ended jobs are written back as the write-back
sends them (a read per 50 Jobs rows, then 10 target rows and 10 Jobs rows a request, one request
in flight per stage, each re-queued the moment the previous one is answered), and one second
later the mirror lists `--rows` processing rows. Printed: when the listing finished (from the
backlog's start), with no backlog, with the limiter's fairness on (the shipped `FAIR_EVERY`) and
off (the write-back always first, as before).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from controller.changes import list_processing
from controller.clients.airtable import FAIR_EVERY, AirtableClient
from sandbox.world import AIRTABLE_KEY, World

RATE = 4.5  # AIRTABLE_REQUESTS_PER_SECOND's default


async def run(results: int, rows: int, fair_every: int | None) -> tuple[float, float, int]:
    """(listing done after s, backlog done after s, requests sent)."""
    async with World() as world:
        base = world.base_id
        jobs = [world.airtable.add_record(base, "Jobs", {"Status": "processing"}) for _ in range(results)]
        targets = [world.airtable.add_record(base, "Segments", {"Name": "s"}) for _ in range(results)]
        for _ in range(rows):
            world.airtable.add_record(base, "Jobs", {"Status": "processing", "External Job ID": "x"})
        client = AirtableClient(
            api_key=AIRTABLE_KEY,
            base_id=base,
            api_url=world.airtable.url,
            requests_per_second=RATE,
            penalty_seconds=30,
        )
        client._limiter._fair_every = fair_every
        sent = 0

        async def stage(batches: list[list[str]], send: str) -> None:
            nonlocal sent
            for batch in batches:
                if send == "read":
                    await client.get_records("Jobs", batch, fields=["Status", "Notes"])
                else:
                    table = "Segments" if send == "target" else "Jobs"
                    await client.update_records(
                        table, [(rid, {"Name" if send == "target" else "Notes": "done"}) for rid in batch]
                    )
                sent += 1

        def chunks(ids: list[str], size: int) -> list[list[str]]:
            return [ids[i : i + size] for i in range(0, len(ids), size)]

        t0 = time.monotonic()
        backlog = asyncio.gather(
            stage(chunks(jobs, 50), "read"),
            stage(chunks(targets, 10), "target"),
            stage(chunks(jobs, 10), "jobs"),
        )
        await asyncio.sleep(1.0)
        await list_processing(client, "Jobs")
        listed = time.monotonic() - t0
        await backlog
        done = time.monotonic() - t0
        await client.close()
        return listed, done, sent


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench takeover", description=__doc__)
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"takeover: {args.results} results to write back, the mirror lists {args.rows} processing rows")
    print(f"{'limiter':<34} {'listing done':>13} {'backlog done':>13} {'requests':>9}")
    for label, results, fair in (
        ("no backlog", 0, FAIR_EVERY),
        (f"fair (a read waits <= {FAIR_EVERY} starts)", args.results, FAIR_EVERY),
        ("write-back always first", args.results, None),
    ):
        listed, done, sent = asyncio.run(run(results, args.rows, fair))
        print(f"{label:<34} {listed:>12.1f}s {done:>12.1f}s {sent:>9}")
    return 0
