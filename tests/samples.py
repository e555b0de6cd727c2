"""Valid inputs shared by several test modules, so that each is written once."""

from typing import Any

# The variables Settings requires (contract section 5), with fake secrets tests can grep for.
REQUIRED_ENV = {
    "AIRTABLE_API_KEY": "patSECRETairtable000",
    "AIRTABLE_BASE_ID": "appABCDEFGHIJKLMN",
    "NCA_API_URL": "http://127.0.0.1:8000",
    "NCA_API_KEY": "ncaSECRETkey0000",
    "WEBHOOK_TOKEN": "hookSECRETtoken000",
}


def mediajob_body(name: str = "x", **spec: object) -> dict[str, Any]:
    """One valid MediaJob: the schema tests and the API-server tests check the same object."""
    return {
        "apiVersion": "media.phi.dev/v1alpha1",
        "kind": "MediaJob",
        "metadata": {"name": name},
        "spec": {
            "airtableRecordId": "recAbCdEfGhIjKlMn",
            "externalJobId": "d0451a2c-fe2a-4cb9-8740-bfd1a0b36aba",
            "operation": "combine",
            "submittedAt": "2026-11-28T17:41:05Z",
            "target": {"table": "Segments", "recordId": "recSEGaaaaaaaaaaa"},
            **spec,
        },
    }


def nca_webhook_body(**fields: object) -> dict[str, object]:
    """What NCA POSTs to a webhook_url when a job ends (as the recorded 30_webhook_*.json samples);
    `fields` sets `id`, `job_id`, `response` and overrides any other field."""
    body: dict[str, object] = {
        "endpoint": "/v1/video/concatenate",
        "code": 200,
        "id": None,
        "job_id": None,
        "response": None,
        "message": "success",
        "pid": 11625,
        "queue_id": 140153981162064,
        "run_time": 0.3,
        "queue_time": 0.0,
        "total_time": 0.3,
        "queue_length": 0,
        "build_number": 209,
    }
    body.update(fields)
    return body
