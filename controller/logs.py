"""Logging: JSON lines in the container, the job on every line about it, never a secret.

Secrets are kept out by construction (the clients never format them), and the scrubbing filter
is the last line of defence: any configured secret value that still reaches a record is masked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

from controller.model import MediaJob

_JOB_FIELDS = ("mediajob", "namespace", "external_job_id")


class ScrubSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if len(s) >= 4)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        clean = self.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if self.scrub(text) != text:
                record.exc_info = None
                record.msg = f"{record.msg} [traceback withheld: it contained a secret]"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _JOB_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        # kopf attaches the object it is handling as `k8s_ref`.
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, Mapping) and "mediajob" not in line:
            line["mediajob"] = ref.get("name")
            line["namespace"] = ref.get("namespace")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the MediaJob's name and NCA id to every line about that job."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def for_job(logger: logging.Logger, job: MediaJob) -> JobLogger:
    return JobLogger(
        logger,
        {"mediajob": job.name, "namespace": job.namespace, "external_job_id": job.spec.external_job_id},
    )


def configure(*, fmt: str, secrets: Iterable[str], level: int | str = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ScrubSecrets(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "aiohttp.access", "kopf.objects"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
