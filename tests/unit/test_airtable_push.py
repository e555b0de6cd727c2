"""The push path's pure decisions: MAC checks, payload reading, the quota projection, the settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.airtable_push import Mode, busy_pace, mac_matches, read_changes, upkeep_period, webhook_spec
from controller.metrics import Metrics, month_seconds, project_month
from controller.settings import Settings, SettingsError
from tests.samples import REQUIRED_ENV

SECRET = base64.b64encode(b"k" * 64).decode()
BODY = b'{"base":{"id":"appX"},"webhook":{"id":"achX"},"timestamp":"2026-11-29T00:00:00.000Z"}'
GOOD = "hmac-sha256=" + hmac.new(b"k" * 64, BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("secret", "body", "header", "ok"),
    [
        (SECRET, BODY, GOOD, True),
        (SECRET, BODY, GOOD + "\n", True),  # header whitespace is not part of the MAC
        (SECRET, BODY + b" ", GOOD, False),
        (SECRET, BODY, GOOD.upper(), False),
        (SECRET, BODY, "", False),
        (SECRET, BODY, GOOD.replace("hmac-sha256=", ""), False),
        (SECRET, BODY, "hmac-sha256=\u00e9\u00e9", False),
        ("not base64!", BODY, GOOD, False),
        (base64.b64encode(b"other").decode(), BODY, GOOD, False),
    ],
)
def test_mac_matches(secret: str, body: bytes, header: str, ok: bool) -> None:
    assert mac_matches(secret, body, header) is ok


TBL, STATUS = "tblJobs", "fldStatus"


def payload(table: dict[str, Any], table_id: str = TBL) -> dict[str, Any]:
    return {"changedTablesById": {table_id: table}, "payloadFormat": "v0"}


@pytest.mark.parametrize(
    ("payloads", "fetch", "touched"),
    [
        # a new row in processing, one with no Status shown, one pending
        (
            [
                payload(
                    {
                        "createdRecordsById": {
                            "recA": {"cellValuesByFieldId": {STATUS: "processing"}},
                            "recB": {"cellValuesByFieldId": {}},
                            "recC": {"cellValuesByFieldId": {STATUS: {"id": "sel1", "name": "pending"}}},
                        }
                    }
                )
            ],
            {"recA", "recB"},
            {"recA", "recB", "recC"},
        ),
        # our own write: completed, no fetch; a re-submission: processing again, fetched
        (
            [
                payload(
                    {
                        "changedRecordsById": {
                            "recA": {"current": {"cellValuesByFieldId": {STATUS: "completed"}}}
                        }
                    }
                ),
                payload(
                    {
                        "changedRecordsById": {
                            "recD": {
                                "current": {"cellValuesByFieldId": {"fldExt": "job-2"}},
                                "unchanged": {"cellValuesByFieldId": {STATUS: "processing"}},
                            }
                        }
                    }
                ),
            ],
            {"recD"},
            {"recA", "recD"},
        ),
        # the last payload wins; a deleted row is touched, never fetched; other tables ignored
        (
            [
                payload({"createdRecordsById": {"recA": {"cellValuesByFieldId": {STATUS: "processing"}}}}),
                payload({"destroyedRecordIds": ["recA"]}),
                payload({"createdRecordsById": {"recZ": {"cellValuesByFieldId": {}}}}, table_id="tblOther"),
            ],
            set(),
            {"recA"},
        ),
        # junk payloads are skipped, not fatal
        ([None, {"changedTablesById": []}, payload({"createdRecordsById": ["x"]})], set(), set()),
    ],
)
def test_read_changes(payloads: list[Any], fetch: set[str], touched: set[str]) -> None:
    changes = read_changes(payloads, TBL, STATUS)
    assert (changes.fetch, changes.touched) == (fetch, touched)


def test_webhook_spec_watches_only_the_mirrors_fields() -> None:
    names = ["Status", "External Job ID", "Notes", "Video", "Response Payload"]
    fields = {name: f"fld{i}" for i, name in enumerate(names)}
    spec = webhook_spec("tblJobs", fields)
    assert spec["options"]["filters"] == {
        "dataTypes": ["tableData"],
        "recordChangeScope": "tblJobs",
        "watchDataInFieldIds": ["fld0", "fld1", "fld3", "fld2"],  # Notes: for the row facts
    }
    assert spec["options"]["includes"] == {"includeCellValuesInFieldIds": ["fld0"]}


def test_month_projection() -> None:
    assert month_seconds(datetime(2026, 2, 15, tzinfo=UTC)) == (14 * 86400.0, 28 * 86400.0)
    assert project_month(30, 3600, 30 * 86400) == 21600
    assert project_month(30, 60, 30 * 86400) == 21600  # a minute of data counts as an hour
    metrics = Metrics()
    metrics.airtable_quota.quota = 1000
    for _ in range(3):
        metrics.count_airtable_call("payloads")
    text = metrics.render().decode()
    assert 'mediajob_airtable_calls_total{purpose="payloads"} 3.0' in text
    assert "mediajob_airtable_monthly_quota 1000.0" in text
    assert "mediajob_airtable_calls_projected_month" in text


def test_push_settings() -> None:
    settings = Settings.from_env(
        {**REQUIRED_ENV, "AIRTABLE_WEBHOOK_URL": "https://ops.phi.dev/webhooks/airtable"}
    )
    assert settings.airtable_webhook_url == "https://ops.phi.dev/webhooks/airtable"
    assert (settings.airtable_monthly_quota, settings.airtable_quota_alert_share) == (100_000, 0.8)
    assert settings.airtable_webhook_check.total_seconds() == 3600
    assert settings.airtable_full_resync.total_seconds() == 6 * 3600
    for name, value in (
        ("AIRTABLE_WEBHOOK_URL", "ftp://x"),
        ("AIRTABLE_MONTHLY_QUOTA", "-1"),
        ("AIRTABLE_QUOTA_ALERT_SHARE", "1.5"),
        ("AIRTABLE_FULL_RESYNC_HOURS", "0"),
        ("AIRTABLE_WEBHOOK_SECRET", "Not_A_Name"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({**REQUIRED_ENV, name: value})


@pytest.mark.parametrize(
    ("mode", "reads"),
    [
        (Mode.STARTING, False),
        (Mode.PUSH, True),
        (Mode.BUSY, False),  # its payloads are skipped
        (Mode.PAYLOAD_POLLING, True),
        (Mode.LISTING, False),
    ],
)
def test_only_a_read_payload_stream_vouches_for_rows(mode: Mode, reads: bool) -> None:
    assert mode.reads_payloads is reads


@pytest.mark.parametrize(
    ("finds", "now", "busy"),
    [
        ([], 0.0, False),
        ([float(t) for t in range(9)], 9.0, False),  # nine calls are not yet a pace
        ([float(t) for t in range(10)], 10.0, True),  # ten within ten intervals (interval 10)
        ([float(t) for t in range(10)], 99.9, True),
        ([float(t) for t in range(10)], 100.5, False),  # they slowed down: back to push
        ([t * 9.5 for t in range(10)], 86.0, True),  # a call every interval or a bit more
        ([t * 12.0 for t in range(10)], 108.0, False),  # one every 1.2 intervals: push pays
    ],
)
def test_new_rows_found_every_interval_make_the_source_busy(
    finds: list[float], now: float, busy: bool
) -> None:
    assert busy_pace(finds, now, interval=10.0) is busy


@pytest.mark.parametrize(
    ("calls", "busy"),
    [
        (10, True),
        (9, True),  # under the pace, but leaving costs two calls at once: it would come back
        (8, True),
        (7, False),  # with the two it costs on leaving, push stays under the pace
        (0, False),
    ],
)
def test_a_busy_source_leaves_only_when_push_stays_under_the_pace(calls: int, busy: bool) -> None:
    finds = [float(t) for t in range(calls)]
    assert busy_pace(finds, 50.0, interval=10.0, busy=True) is busy
    assert busy_pace(finds, 50.0, interval=10.0) is (calls >= 10)  # entering needs the full pace


@pytest.mark.parametrize(
    ("pinged", "check_every", "period"),
    [
        (False, 3600.0, 3600.0),  # no ping: have pings stopped? look hourly
        (True, 3600.0, 86400.0),  # pings show it lives: daily, for the expiry
        (True, 2 * 86400.0, 2 * 86400.0),  # never more often than configured
    ],
)
def test_pings_put_off_the_upkeep(pinged: bool, check_every: float, period: float) -> None:
    assert upkeep_period(pinged, check_every) == period
