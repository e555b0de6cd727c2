"""The seed's design, ported as faithfully as its description allows, to measure ours against.

This is NOT part of the product. It is the polling safety net the seed specified, plus the old
app's webhook handler, with one bug fixed so that it finds jobs at all:

- FIXED: the seed built its Airtable formula with `str.format`, whose `{Created Time}` placeholder
  raised KeyError on every cycle, so it never found a job. Here the formula is built correctly.
- KEPT, as in the seed:
  - one cycle every POLLING_INTERVAL_MINUTES (2 min); rows older than 5 minutes are fetched with
    one formula; each row is checked in turn (no concurrency), a HEAD with a 5 s timeout;
  - the expected URL is `{job_id}_output_0.mp4` for every operation (right only for compose);
  - when the HEAD misses, it asks NCA's job status and acts only on `job_status == 'failed'`,
    which NCA never sends (a failed job is `done` with an error code), so NCA never settles a job;
  - a completion is 2-3 separate Airtable updates (Jobs status and payload, the target row, the
    Jobs notes), through pyairtable's default retry (which gives up on a 429 after a few seconds);
  - jobs older than POLLING_MAX_AGE_HOURS are marked failed;
  - the old app's webhook handler (the seed's primary path): two updates per webhook.

Run: `python -m bench.baseline` with the controller's environment variables.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from pyairtable import Api

log = logging.getLogger("baseline")

# The seed's formula template, which it filled with `.format(...)`; `{Created Time}` is an Airtable
# field reference, so format() raised KeyError('Created Time'). The fix: escape the braces.
SEED_TEMPLATE = (
    "AND({{Status}}='processing', IS_BEFORE({{Created Time}}, DATEADD(NOW(), -{minutes}, 'minutes')))"
)
ATTACHMENT = {
    "combine": "Voiceover + Video",
    "concatenate": "Combined Segments Video",
    "add_music": "Video + Music",
}


class Seed:
    def __init__(self, env: dict[str, str]) -> None:
        self.api = Api(
            env["AIRTABLE_API_KEY"], endpoint_url=env.get("AIRTABLE_API_URL", "https://api.airtable.com")
        )
        base = env["AIRTABLE_BASE_ID"]
        self.jobs = self.api.table(base, env.get("AIRTABLE_JOBS_TABLE", "Jobs"))
        self.tables = {
            "Segments": self.api.table(base, env.get("AIRTABLE_SEGMENTS_TABLE", "Segments")),
            "Videos": self.api.table(base, env.get("AIRTABLE_VIDEOS_TABLE", "Videos")),
        }
        self.nca_url = env["NCA_API_URL"].rstrip("/")
        self.nca_key = env["NCA_API_KEY"]
        self.spaces = env.get("SPACES_BASE_URL", "").rstrip("/")
        self.interval = float(env.get("POLLING_INTERVAL_MINUTES", "2")) * 60
        self.max_age = timedelta(hours=float(env.get("POLLING_MAX_AGE_HOURS", "24")))
        self.min_age_minutes = float(env.get("BASELINE_MIN_AGE_MINUTES", "5"))
        self.http = requests.Session()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.cycle()
            except Exception:
                log.exception("cycle failed")
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def cycle(self) -> None:
        formula = SEED_TEMPLATE.format(minutes=self.min_age_minutes)
        rows = self.jobs.all(formula=formula)
        for row in rows:
            if self.stop.is_set():
                return
            try:
                self.check(row)
            except Exception as exc:
                log.warning("job %s: %s", row.get("id"), exc)

    def check(self, row: dict[str, Any]) -> None:
        fields = row["fields"]
        job_id = fields.get("External Job ID")
        payload = _payload(fields.get("Request Payload"))
        url = f"{self.spaces}/{job_id}_output_0.mp4"
        try:
            found = self.http.head(url, timeout=5).status_code == 200
        except requests.RequestException:
            found = False
        if found:
            self.complete(row, payload, url, "Completed by polling (output on Spaces)")
            return
        try:
            answer = self.http.post(
                f"{self.nca_url}/v1/toolkit/job/status",
                json={"job_id": job_id},
                headers={"X-API-Key": self.nca_key},
                timeout=10,
            ).json()
            status = (answer.get("response") or {}).get("job_status")
        except (requests.RequestException, ValueError, AttributeError):
            status = None
        if status == "failed":  # NCA never says this: a failed job is "done" with an error code
            self.jobs.update(row["id"], {"Status": "failed", "Notes": "NCA reported failure"})
            return
        created_text = str(fields.get("Created Time", row["createdTime"]))
        created = datetime.fromisoformat(created_text.replace("Z", "+00:00"))
        if datetime.now(UTC) - created > self.max_age:
            self.jobs.update(row["id"], {"Status": "failed", "Notes": "Timed out"})

    def complete(self, row: dict[str, Any], payload: dict[str, Any], url: str, note: str) -> None:
        response = json.dumps({"output_url": url})
        self.jobs.update(row["id"], {"Status": "completed", "Response Payload": response})
        operation = payload.get("operation")
        target = _target(row["fields"], payload, operation)
        if target:
            table, record_id = target
            fields: dict[str, Any] = {ATTACHMENT[str(operation)]: [{"url": url}]}
            if table == "Segments":
                fields["Status"] = "combined"
            self.tables[table].update(record_id, fields)
        self.jobs.update(row["id"], {"Notes": note})


def _payload(raw: Any) -> dict[str, Any]:
    try:
        value = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _target(fields: dict[str, Any], payload: dict[str, Any], operation: Any) -> tuple[str, str] | None:
    if operation == "combine":
        link = fields.get("Segment") or [payload.get("segment_id")]
        return ("Segments", link[0]) if link and link[0] else None
    if operation in ("concatenate", "add_music"):
        link = fields.get("Video") or [payload.get("video_id")]
        return ("Videos", link[0]) if link and link[0] else None
    return None


def webhook_server(seed: Seed, port: int) -> ThreadingHTTPServer:
    """The old app's webhook handler: the seed's primary path, two updates per completion."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            self.send_response(200)
            self.end_headers()
            try:
                record = seed.jobs.get(body["id"])
                response = body.get("response")
                url = response[0]["file_url"] if isinstance(response, list) else response
                if body.get("code") == 200:
                    done = {"Status": "completed", "Response Payload": json.dumps(body)}
                    seed.jobs.update(record["id"], done)
                    payload = _payload(record["fields"].get("Request Payload"))
                    target = _target(record["fields"], payload, payload.get("operation"))
                    if target:
                        table, record_id = target
                        attachment = {ATTACHMENT[payload["operation"]]: [{"url": url}]}
                        seed.tables[table].update(record_id, attachment)
                else:
                    seed.jobs.update(record["id"], {"Status": "failed", "Notes": str(body.get("message"))})
            except Exception as exc:
                log.warning("webhook: %s", exc)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s baseline: %(message)s")
    env = dict(os.environ)
    seed = Seed(env)
    server = webhook_server(seed, int(env.get("HTTP_PORT", "8080")))
    signal.signal(signal.SIGTERM, lambda *_: seed.stop.set())
    seed.run()
    server.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
