"""The formula evaluator on its own: Airtable semantics without a server."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.clients.airtable import any_record
from sandbox import Formula, FormulaError
from sandbox.formula import RecordView

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def record(**fields: Any) -> RecordView:
    return RecordView("recAAAAAAAAAAAAAA", fields, NOW - timedelta(hours=1), NOW - timedelta(minutes=2))


@pytest.mark.parametrize(
    ("formula", "fields", "expected"),
    [
        ("{Status}='processing'", {"Status": "processing"}, True),
        ("{Status}='processing'", {"Status": "Processing"}, False),
        ("{Status}!='processing'", {}, True),
        ("{Notes}=''", {}, True),
        ("{Notes}=BLANK()", {"Notes": ""}, True),
        ("NOT({Notes})", {}, True),
        ("{Count}>2", {"Count": 3}, True),
        ("{Count}<=2", {"Count": 3}, False),
        ("{A}&\"-\"&{B}='x-1'", {"A": "x", "B": 1}, True),
        ("LEN({A})=5", {"A": "hello"}, True),
        ("FIND('ll', {A})=3", {"A": "hello"}, True),
        ("FIND('zz', {A})", {"A": "hello"}, False),
        ("'it\\'s'=\"it's\"", {}, True),
        ("RECORD_ID()='recAAAAAAAAAAAAAA'", {}, True),
        ("OR(RECORD_ID()='recB', RECORD_ID()='recC')", {}, False),
        ("AND(TRUE(), NOT(FALSE()))", {}, True),
        (
            "IS_BEFORE({At}, DATEADD(NOW(), -5, 'minutes'))",
            {"At": "2026-11-28T11:50:00.000Z"},
            True,
        ),
        (
            "IS_BEFORE({At}, DATEADD(NOW(), -5, 'minutes'))",
            {"At": "2026-11-28T11:58:00.000Z"},
            False,
        ),
        ("IS_AFTER({At}, '2026-11-28')", {"At": "2026-11-28T00:00:01Z"}, True),
        ("IS_BEFORE({At}, NOW())", {}, False),
        ("DATETIME_DIFF(NOW(), {At}, 'minutes')=90", {"At": "2026-11-28T10:30:00Z"}, True),
        ("DATETIME_DIFF(NOW(), {At}, 'hours')=1", {"At": "2026-11-28T10:30:00Z"}, True),
        ("DATETIME_DIFF({At}, NOW(), 'days')=-2", {"At": "2026-11-26T11:00:00Z"}, True),
        ("DATETIME_DIFF(NOW(), CREATED_TIME(), 'seconds')=3600", {}, True),
        ("IS_AFTER(LAST_MODIFIED_TIME(), DATEADD(NOW(), -3, 'minutes'))", {}, True),
        ("DATEADD({At}, 1, 'days')='2026-11-29T00:00:00.000Z'", {"At": "2026-11-28"}, True),
        ("{At} < NOW()", {"At": "2026-11-28T11:00:00Z"}, True),
        ("-{N} + 2 * 3 = 1", {"N": 5}, True),
        ("IF({Status}='done', 1, 0)", {"Status": "done"}, True),
        ("{Linked}='recX'", {"Linked": ["recX"]}, True),
        ("Status='ok'", {"Status": "ok"}, True),
    ],
)
def test_evaluation(formula: str, fields: dict[str, Any], expected: bool) -> None:
    assert Formula(formula).matches(record(**fields), NOW) is expected


@pytest.mark.parametrize(
    "formula",
    [
        "{Status",
        "{Status}=",
        "AND(",
        "NOT(1, 2)",
        "UNKNOWN_FN(1)",
        "'open",
        "1 ? 2",
        "()",
        "RECORD_ID(1)",
    ],
)
def test_syntax_errors(formula: str) -> None:
    with pytest.raises(FormulaError, match=r"^The formula for filtering records is invalid: "):
        Formula(formula)


def test_unknown_fields_only_with_a_schema() -> None:
    assert Formula("{Nope}=1").fields == {"Nope"}
    with pytest.raises(FormulaError, match="Unknown field names: nope"):
        Formula("{Nope}=1", known_fields={"Status"})


def test_runtime_error_excludes_record() -> None:
    formula = Formula("IS_BEFORE({At}, NOW())")
    assert not formula.matches(record(At="not a date"), NOW)
    with pytest.raises(ValueError, match="#ERROR!"):
        formula.evaluate(record(At="not a date"), NOW)


@pytest.mark.parametrize("seed", range(5))
def test_a_read_by_ids_is_a_set_lookup_with_the_same_answer(seed: int) -> None:
    rng = random.Random(seed)
    ids = ["rec" + "".join(rng.choices(string.ascii_letters + string.digits, k=14)) for _ in range(200)]
    asked = [*rng.sample(ids, 50), ids[0].upper(), "recNOSUCHROWaaaaaa"]  # case matters, as in Airtable
    fast = Formula(str(any_record(asked)))  # what the controller sends (pyairtable's spelling)
    assert fast.record_ids == frozenset(asked)
    # The same question that the parser cannot recognise, so it is evaluated term by term.
    slow = Formula("OR(" + ", ".join(f"RECORD_ID()&''='{i}'" for i in asked) + ")")
    assert slow.record_ids is None
    rows = [RecordView(i, {"Status": rng.choice(["processing", "completed"])}, NOW, NOW) for i in ids]
    assert [r for r in rows if fast.matches(r, NOW)] == [r for r in rows if slow.matches(r, NOW)]
    assert sum(1 for r in rows if fast.matches(r, NOW)) == 50
    # Inside an AND (the push source's fetch), with the same answer as term by term.
    within = Formula(f"AND({{Status}}='processing', {fast.text})")
    reference = Formula(f"AND({{Status}}='processing', {slow.text})")
    assert [r for r in rows if within.matches(r, NOW)] == [r for r in rows if reference.matches(r, NOW)]


@pytest.mark.parametrize(
    "text",
    [
        "OR(RECORD_ID()='recA', {Status}='x')",
        "AND(RECORD_ID()='recA')",
        "OR(RECORD_ID()='recA')&'x'",
        "NOT(OR(RECORD_ID()='recA'))",
        "RECORD_ID()='recA'",
        "OR(RECORD_ID()!='recA')",
        "OR('recA'=RECORD_ID())",
    ],
)
def test_other_formulas_are_evaluated_term_by_term(text: str) -> None:
    assert Formula(text).record_ids is None
