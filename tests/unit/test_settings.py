from datetime import timedelta

import pytest

from controller.settings import Secret, Settings, SettingsError
from tests.samples import REQUIRED_ENV


def load(**overrides: str) -> Settings:
    env = {**REQUIRED_ENV, **overrides}
    return Settings.from_env({k: v for k, v in env.items() if v != "<unset>"})


def test_defaults_follow_the_seed() -> None:
    s = load()
    assert s.polling_interval == timedelta(minutes=2)
    assert s.polling_max_age == timedelta(hours=24)
    assert s.polling_batch_size == 10
    assert s.polling_enabled is True
    assert s.airtable_api_url == "https://api.airtable.com"
    assert (s.airtable_jobs_table, s.airtable_segments_table, s.airtable_videos_table) == (
        "Jobs",
        "Segments",
        "Videos",
    )
    assert s.spaces_base_url == "https://phi-bucket.nyc3.digitaloceanspaces.com/phi-bucket"
    assert s.http_port == 8080
    assert (s.lease_duration, s.lease_renew_deadline, s.lease_retry_period) == (
        timedelta(seconds=15),
        timedelta(seconds=10),
        timedelta(seconds=2),
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("POLLING_INTERVAL_MINUTES", "0.05", timedelta(seconds=3)),
        ("POLLING_INTERVAL_MINUTES", "2", timedelta(minutes=2)),
        ("POLLING_MAX_AGE_HOURS", "0.001", timedelta(seconds=3.6)),
        ("POLLING_MAX_AGE_HOURS", "1.5", timedelta(minutes=90)),
    ],
)
def test_decimals_are_accepted_for_minutes_and_hours(name: str, value: str, expected: timedelta) -> None:
    s = load(**{name: value})
    got = s.polling_interval if name.startswith("POLLING_INTERVAL") else s.polling_max_age
    assert got == expected


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("AIRTABLE_API_KEY", "<unset>", "required"),
        ("AIRTABLE_BASE_ID", "<unset>", "required"),
        ("NCA_API_URL", "<unset>", "required"),
        ("NCA_API_KEY", "<unset>", "required"),
        ("WEBHOOK_TOKEN", "<unset>", "required"),
        ("AIRTABLE_BASE_ID", "base1", "base id"),
        ("NCA_API_URL", "ftp://nca", "http or https"),
        ("NCA_API_URL", "http://user:pw@nca", "credentials"),
        ("SPACES_BASE_URL", "not a url", "http or https"),
        ("AIRTABLE_API_URL", "https://x/?q=1", "query"),
        ("POLLING_INTERVAL_MINUTES", "two", "number"),
        ("POLLING_INTERVAL_MINUTES", "0", "positive"),
        ("POLLING_INTERVAL_MINUTES", "-1", "positive"),
        ("POLLING_INTERVAL_MINUTES", "nan", "positive"),
        ("POLLING_MAX_AGE_HOURS", "inf", "positive"),
        ("POLLING_BATCH_SIZE", "1.5", "whole number"),
        ("POLLING_BATCH_SIZE", "0", "between"),
        ("POLLING_ENABLED", "maybe", "true or false"),
        ("HTTP_PORT", "70000", "between"),
        ("HTTP_PORT", "-1", "between"),
        ("WATCH_NAMESPACE", "Bad_NS", "DNS-1123"),
        ("AIRTABLE_JOBS_TABLE", "Jobs/../x", "table name"),
        ("LEASE_RENEW_DEADLINE_SECONDS", "20", "shorter than LEASE_DURATION"),
        # Section 7: values out of range stop start-up too, with no traceback.
        ("POLLING_MAX_AGE_HOURS", "7e7", "at most ten years"),
        ("POLLING_MAX_AGE_HOURS", "87601", "at most ten years"),
        ("POLLING_MAX_AGE_HOURS", "1e300", "at most ten years"),
        ("POLLING_MAX_AGE_HOURS", "0.0002", "at least one second"),
        ("POLLING_INTERVAL_MINUTES", "1e-12", "at least one second"),
        ("POLLING_INTERVAL_MINUTES", "0.01", "at least one second"),
        ("POLLING_INTERVAL_MINUTES", "1e300", "at most ten years"),
        ("POLLING_SLOW_AFTER_MINUTES", "1e300", "at most ten years"),
        ("POLLING_SLOW_INTERVAL_MINUTES", "1e-300", "at least one second"),
        ("POLLING_SLOW_INTERVAL_MINUTES", "1", "not be shorter than POLLING_INTERVAL_MINUTES"),
        ("AIRTABLE_PENALTY_SECONDS", "1e300", "at most ten years"),
        ("AIRTABLE_PENALTY_SECONDS", "0.5", "at least one second"),
        ("LEASE_DURATION_SECONDS", "1e300", "at most ten years"),
        ("LEASE_RETRY_PERIOD_SECONDS", "1e-9", "at least one second"),
        ("AIRTABLE_REQUESTS_PER_SECOND", "1e300", "at most 1000"),
        ("POLLING_BATCH_SIZE", "1e300", "whole number"),
        ("POLLING_BATCH_SIZE", "9" * 5000, "whole number"),
        ("HTTP_PORT", "1e300", "whole number"),
    ],
)
def test_a_bad_variable_is_named_in_one_clear_line(name: str, value: str, words: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(**{name: value})
    message = str(info.value)
    assert info.value.name == name
    assert message.startswith(name + ":")
    assert words in message
    assert "\n" not in message


def test_leader_election_needs_a_pod_name_and_a_namespace() -> None:
    with pytest.raises(SettingsError, match="POD_NAME"):
        load(LEADER_ELECTION_ENABLED="true", LEASE_NAMESPACE="ops")
    with pytest.raises(SettingsError, match="LEASE_NAMESPACE"):
        load(LEADER_ELECTION_ENABLED="true", POD_NAME="pod-1")
    s = load(LEADER_ELECTION_ENABLED="true", POD_NAME="pod-1", WATCH_NAMESPACE="media")
    assert (s.lease_namespace, s.pod_name, s.lease_name) == ("media", "pod-1", "mediajob-controller")


def test_the_in_cluster_namespace_is_the_lease_namespace_of_last_resort() -> None:
    env = {**REQUIRED_ENV, "LEADER_ELECTION_ENABLED": "true", "POD_NAME": "p"}
    assert Settings.from_env(env, in_cluster_namespace="mediajob-system").lease_namespace == "mediajob-system"


@pytest.mark.parametrize("name", ["AIRTABLE_API_KEY", "NCA_API_KEY", "WEBHOOK_TOKEN"])
def test_a_malformed_secret_is_reported_without_its_value(name: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(**{name: "leaky value with spaces"})
    assert name in str(info.value)
    assert "leaky" not in str(info.value)


def test_secrets_never_print() -> None:
    s = load()
    text = repr(s) + str(s)
    for secret in s.secrets:
        assert secret not in text
    assert repr(Secret("abc")) == "Secret('***')"
    assert set(s.secrets) == {REQUIRED_ENV[k] for k in ("AIRTABLE_API_KEY", "NCA_API_KEY", "WEBHOOK_TOKEN")}


def test_urls_lose_their_trailing_slash() -> None:
    assert (
        load(SPACES_BASE_URL="http://127.0.0.1:9000/bucket/").spaces_base_url
        == "http://127.0.0.1:9000/bucket"
    )


def test_edges_of_the_duration_range_are_accepted() -> None:
    s = load(
        POLLING_INTERVAL_MINUTES=str(1 / 60), POLLING_MAX_AGE_HOURS="87600", POLLING_SLOW_INTERVAL_MINUTES="2"
    )
    assert s.polling_interval == timedelta(seconds=1)
    assert s.polling_max_age == timedelta(days=3650)
    assert s.polling_slow_interval == timedelta(minutes=2)


def test_an_unset_slow_interval_is_never_shorter_than_the_interval() -> None:
    assert load(POLLING_INTERVAL_MINUTES="30").polling_slow_interval == timedelta(minutes=30)
    assert load(POLLING_INTERVAL_MINUTES="1").polling_slow_interval == timedelta(minutes=10)


@pytest.mark.parametrize("pattern_var", ["AIRTABLE_BASE_ID", "WATCH_NAMESPACE", "POD_NAME", "LEASE_NAME"])
def test_patterns_are_matched_whole(pattern_var: str) -> None:
    good = {"AIRTABLE_BASE_ID": "appAAAAAAAAAAAAAA"}.get(pattern_var, "media")
    assert load(**{pattern_var: good})
    with pytest.raises(SettingsError, match=pattern_var):
        load(**{pattern_var: good + "\nx"})


def test_the_check_budget_defaults() -> None:
    s = load()
    assert s.spaces_requests_per_second == 25.0
    assert s.polling_min_interval == timedelta(seconds=5)
    assert s.nca_listing_enabled is True
    assert s.airtable_write_linger is None  # unset: by the quota


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SPACES_REQUESTS_PER_SECOND": "0"}, "SPACES_REQUESTS_PER_SECOND"),
        ({"SPACES_REQUESTS_PER_SECOND": "801"}, "SPACES_REQUESTS_PER_SECOND"),
        ({"SPACES_REQUESTS_PER_SECOND": "nan"}, "SPACES_REQUESTS_PER_SECOND"),
        ({"SPACES_REQUESTS_PER_SECOND": "lots"}, "SPACES_REQUESTS_PER_SECOND"),
        ({"POLLING_MIN_INTERVAL_SECONDS": "0.5"}, "POLLING_MIN_INTERVAL_SECONDS"),
        ({"POLLING_MIN_INTERVAL_SECONDS": "121"}, "POLLING_MIN_INTERVAL_SECONDS"),  # longer than the interval
        ({"NCA_LISTING_ENABLED": "sometimes"}, "NCA_LISTING_ENABLED"),
    ],
)
def test_bad_budget_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}: "):
        load(**env)


@pytest.mark.parametrize(
    ("env", "floor"),
    [
        ({}, timedelta(seconds=5)),
        ({"POLLING_INTERVAL_MINUTES": "0.05"}, timedelta(seconds=3)),  # unset: never above the interval
        ({"POLLING_MIN_INTERVAL_SECONDS": "120"}, timedelta(minutes=2)),  # = interval: the budget is off
    ],
)
def test_the_floor_is_never_longer_than_the_interval(env: dict[str, str], floor: timedelta) -> None:
    assert load(**env).polling_min_interval == floor


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AIRTABLE_BASE_ID", "appREPLACEMEbase1"),  # config.env as shipped
        ("AIRTABLE_BASE_ID", "appreplacemeBASE1"),
        ("NCA_API_URL", "https://nca.example.com"),  # config.env as shipped
        ("NCA_API_URL", "http://example.org:8080"),
        ("SPACES_BASE_URL", "https://bucket.example/phi-bucket"),
        ("AIRTABLE_API_URL", "https://api.airtable.invalid"),
        ("AIRTABLE_WEBHOOK_URL", "https://mediajob.example.com/webhooks/airtable"),  # config.env's comment
    ],
)
def test_placeholders_are_refused_with_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}: .*placeholder") as caught:
        load(**{name: value})
    assert "\n" not in str(caught.value)


def test_real_names_that_only_contain_example_are_accepted() -> None:
    assert load(NCA_API_URL="https://example-nca.phi.dev").nca_api_url == "https://example-nca.phi.dev"
    assert load(NCA_API_URL="https://nca.examples.com").nca_api_url == "https://nca.examples.com"


def test_the_shipped_config_env_is_refused_until_edited() -> None:
    """Pods must not start on the unedited placeholders: the first one is named."""
    from pathlib import Path

    shipped = Path(__file__).parents[2] / "manifests" / "default" / "config.env"
    env = dict(
        line.split("=", 1) for line in shipped.read_text().splitlines() if line and not line.startswith("#")
    )
    secrets = {k: REQUIRED_ENV[k] for k in ("AIRTABLE_API_KEY", "NCA_API_KEY", "WEBHOOK_TOKEN")}
    with pytest.raises(SettingsError, match=r"^AIRTABLE_BASE_ID: .*placeholder"):
        Settings.from_env({**env, **secrets, "POD_NAME": "p", "LEASE_NAMESPACE": "ns"})
    env["AIRTABLE_BASE_ID"] = "appREALbase000001"
    with pytest.raises(SettingsError, match=r"^NCA_API_URL: .*placeholder"):
        Settings.from_env({**env, **secrets, "POD_NAME": "p", "LEASE_NAMESPACE": "ns"})
    env["NCA_API_URL"] = "http://nca.media.svc:8080"
    assert Settings.from_env({**env, **secrets, "POD_NAME": "p", "LEASE_NAMESPACE": "ns"})
