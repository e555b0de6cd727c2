import pytest

from controller.naming import (
    UnsafeIdError,
    check_external_job_id,
    expected_output_url,
    record_id_from_name,
    resource_name,
)

BASE = "https://phi-bucket.nyc3.digitaloceanspaces.com/phi-bucket"
JOB = "d0451a2c-fe2a-4cb9-8740-bfd1a0b36aba"


@pytest.mark.parametrize(
    ("operation", "override", "expected"),
    [
        ("combine", None, f"{BASE}/{JOB}_output_0.mp4"),
        ("concatenate", None, f"{BASE}/{JOB}.mp4"),
        ("add_music", None, f"{BASE}/{JOB}.mp4"),
        ("transcribe", None, None),
        ("combine", f"{BASE}/custom.mp4", f"{BASE}/custom.mp4"),
        ("transcribe", f"{BASE}/t.srt", f"{BASE}/t.srt"),
    ],
)
def test_expected_output_url(operation: str, override: str | None, expected: str | None) -> None:
    assert expected_output_url(BASE, operation, JOB, override) == expected


@pytest.mark.parametrize(
    "bad",
    [
        *["../etc/passwd", "a/b", "a b", "x" * 129, "", ".hidden", "a..b", "-lead", "ü", "a\nb"],
        # Patterns are matched whole (section 7), and the id is a label value (section 1).
        *["abc\n", "abc\r\n", "\nabc", "x" * 64, "trail-", "trail."],
    ],
)
def test_unsafe_external_ids_are_refused(bad: str) -> None:
    with pytest.raises(UnsafeIdError):
        check_external_job_id(bad)
    with pytest.raises(UnsafeIdError):
        expected_output_url(BASE, "combine", bad)


@pytest.mark.parametrize(
    "record_id",
    ["recAbCdEfGhIjKlMn", "recabcdefghijklmn", "recABCDEFGHIJKLMN", "rec01234567890123", "recA1b2C3d4E5f6G7"],
)
def test_resource_names_are_dns_labels_and_reversible(record_id: str) -> None:
    name = resource_name(record_id)
    assert len(name) <= 63
    assert name == name.lower()
    assert all(ch.isalnum() or ch == "-" for ch in name)
    assert record_id_from_name(name) == record_id
    assert resource_name(record_id) == name  # deterministic


def test_ids_differing_only_in_case_get_different_names() -> None:
    a, b = "recAbcdefghijklmn", "recabcdefghijklmN"
    assert a.lower() == b.lower()
    assert resource_name(a) != resource_name(b)


@pytest.mark.parametrize(
    "bad", ["rec123", "RECabcdefghijklmn", "recabcdefghijklm!", "xyzabcdefghijklmno", "recabcdefghijklmn\n"]
)
def test_bad_record_ids_get_no_name(bad: str) -> None:
    with pytest.raises(UnsafeIdError):
        resource_name(bad)


@pytest.mark.parametrize(
    "name",
    [
        "recabcdefghijklmn-ffff",
        "foo",
        "recabcdefghijklmn-1",
        "rec0000000000000a-0001",
        "recabcdefghijklmn-0000\n",
    ],
)
def test_foreign_names_map_to_no_record(name: str) -> None:
    assert record_id_from_name(name) is None


def test_a_label_length_external_id_is_accepted() -> None:
    assert check_external_job_id("a" * 63) == "a" * 63
    assert check_external_job_id("a.b_c-d") == "a.b_c-d"
