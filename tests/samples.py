"""One valid MediaJob body, shared by the schema tests and the API-server tests: both check one object."""

from typing import Any


def mediajob_body(name: str = "x", **spec: object) -> dict[str, Any]:
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
