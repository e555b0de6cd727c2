"""The e2e report port of `python -m sandbox.serve`: seeding jobs on request, refusing bad input."""

from __future__ import annotations

import argparse
import random

import httpx

from sandbox.serve import report_app
from sandbox.world import World
from tests.loopback import serve


async def test_jobs_seeds_with_a_fixed_running_time_and_refuses_bad_numbers() -> None:
    args = argparse.Namespace(webhook_url=None, drop_rate=1.0)
    async with (
        World() as world,
        serve(report_app(world, args, random.Random(1))) as url,
        httpx.AsyncClient() as http,
    ):
        assert (await http.post(f"{url}/jobs?count=2")).json() == {"jobs": 2}
        held = await http.post(f"{url}/jobs", params={"count": 3, "running_s": 600})
        assert held.json() == {"jobs": 5}
        running = [world.nca_sim.jobs[job.job_id].running_s for job in world.jobs]
        assert running[2:] == [600.0, 600.0, 600.0]
        assert all(5 <= s <= 30 for s in running[:2])
        bad = await http.post(f"{url}/jobs", params={"count": "two"})
        assert bad.status_code == 400
        assert "must be numbers" in bad.text
        assert len(world.jobs) == 5
        report = (await http.get(f"{url}/report")).json()
        assert [job["status"] for job in report["jobs"]] == ["processing"] * 5
