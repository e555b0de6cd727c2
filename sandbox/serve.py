"""The simulators as a long-running service, for the kind end-to-end run (`make e2e`).

    python -m sandbox.serve --jobs 12 --webhook-url http://mediajob-controller:8080/webhooks/nca?token=...

Airtable, NCA and Spaces listen on 0.0.0.0 (ports 8081, 8082, 8083), seeded with jobs that finish
over the next minute; most of their webhooks are dropped. It runs until SIGTERM.

A fourth port (8084) is for the end-to-end checks, never for the controller: ``GET /report`` lists
each seeded job with the Airtable writes that touched its rows (a doubled write shows as more than 2)
and the webhooks sent with the controller's answers,
and ``POST /jobs?count=N`` seeds N more jobs, e.g. just before a leader is killed
(``&running_s=S``: each runs S seconds at NCA, to keep jobs processing while gauges are read).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
from typing import Any

from aiohttp import web

from .world import World

OPERATIONS = ("combine", "concatenate", "add_music")
log = logging.getLogger("sandbox.serve")


def seed(
    world: World, args: argparse.Namespace, rng: random.Random, count: int, running_s: float | None = None
) -> None:
    for _ in range(count):
        world.add_job(
            OPERATIONS[len(world.jobs) % len(OPERATIONS)],
            webhook_url=args.webhook_url,
            queued_s=rng.uniform(5, 30),
            running_s=rng.uniform(5, 30) if running_s is None else running_s,
            drop_webhook=rng.random() < args.drop_rate,
        )


def report_app(world: World, args: argparse.Namespace, rng: random.Random) -> web.Application:
    async def report(_: web.Request) -> web.Response:
        jobs: list[dict[str, Any]] = [
            {
                "record_id": job.record_id,
                "job_id": job.job_id,
                "operation": job.operation,
                "status": world.jobs_row(job).get("Status"),
                "writes": world.writes(job),
            }
            for job in world.jobs
        ]
        webhooks = [{"job_id": job_id, "status": status} for job_id, _, status in world.nca_sim.webhooks_sent]
        return web.json_response(
            {"jobs": jobs, "writes": len(world.airtable.write_log), "webhooks": webhooks}
        )

    async def add_jobs(request: web.Request) -> web.Response:
        try:
            count = int(request.query.get("count", "1"))
            running_s = float(request.query["running_s"]) if "running_s" in request.query else None
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"count and running_s must be numbers: {exc}") from None
        seed(world, args, rng, count, running_s)
        return web.json_response({"jobs": len(world.jobs)})

    app = web.Application()
    app.router.add_get("/report", report)
    app.router.add_post("/jobs", add_jobs)
    return app


async def serve(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    async with World(host=args.host, ports=(args.airtable_port, args.nca_port, args.spaces_port)) as world:
        seed(world, args, rng, args.jobs)
        runner = web.AppRunner(report_app(world, args, rng))
        await runner.setup()
        await web.TCPSite(runner, args.host, args.report_port).start()
        log.info(
            "simulators up: airtable :%d, nca :%d, spaces :%d; %d jobs seeded",
            args.airtable_port,
            args.nca_port,
            args.spaces_port,
            args.jobs,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - served inside a pod
    parser.add_argument("--airtable-port", type=int, default=8081)
    parser.add_argument("--nca-port", type=int, default=8082)
    parser.add_argument("--spaces-port", type=int, default=8083)
    parser.add_argument("--report-port", type=int, default=8084)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--drop-rate", type=float, default=0.9)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
