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
