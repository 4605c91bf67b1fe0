"""``serendip import``: other systems' logs into decision records, and candidates by reference."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.decision_log import (
    DecisionRecord,
    ExplorationLog,
    LoggedCandidate,
    LoggedSlot,
    read_jsonl,
    write_jsonl,
)
from bandit.log_import import (
    ImportReport,
    LogImportError,
    import_log,
    load_items,
    load_mapping,
    read_rows,
)
from local.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
OBD_MAPPING = ROOT / "examples" / "obd" / "mapping.yaml"
HEADER = ["", "timestamp", "item_id", "position", "click", "propensity_score"]
HEADER += ["user_feature_0", "user-item_affinity_0", "user-item_affinity_1"]


def _obd_like(directory: Path, rows: list[list[object]]) -> Path:
    """A log in the Open Bandit Dataset's own columns, with its mapping and item file beside it."""
    with open(directory / "item_context.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "item_id", "item_feature_0", "item_feature_1"])
        writer.writerow([0, 0, -0.5, "aed79"])
        writer.writerow([1, 1, 0.97, "31af3"])
    with open(directory / "all.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for index, row in enumerate(rows):
            writer.writerow([index, *row])
    (directory / "mapping.yaml").write_text(OBD_MAPPING.read_text(), encoding="utf-8")
    return directory


OBD_ROWS = [
    ["2019-11-24 00:00:34.762830+00:00", 1, 3, 0, 0.5, "81ce", 0.0, 1.0],
    ["2019-11-24 00:00:53.965051+00:00", 0, 1, 1, 0.5, "03a5", 2.0, 0.0],
    ["2019-11-24 00:01:00+00:00", 0, 2, "", 0.5, "03a5", 0.0, 0.0],
]


def _import(directory: Path) -> tuple[list[DecisionRecord], ImportReport]:
    mapping, base = load_mapping(directory / "mapping.yaml")
    assert mapping.items is not None
    items = load_items(mapping.items, base)
    report = ImportReport()
    rows = read_rows(directory / "all.csv", mapping.format)
    return list(import_log(rows, mapping, items, report)), report


def test_each_obd_row_is_an_event_with_one_slot_at_its_position(tmp_path: Path) -> None:
    records, report = _import(_obd_like(tmp_path, OBD_ROWS))
    assert (report.rows, report.events, report.rewards, report.items) == (3, 3, 2, 2)
    first, second, third = records
    assert first.event_id == "obd-1" and first.policy == "obd"
    assert first.timestamp == pytest.approx(1574553634.76283)
    assert first.slate == [LoggedSlot(item_id="1", position=3, probability=0.5, explored=True)]
    assert first.propensities == "marginal" and first.segment == "all"
    # The context groups the columns into the namespaces the mapping names
    assert first.context == {
        "user": {"user_feature_0": "81ce"},
        "affinity": {"user-item_affinity_0": 0.0, "user-item_affinity_1": 1.0},
    }
    # Every event's candidates are the item file's items, one list shared by all
    assert [c.id for c in first.candidates] == ["0", "1"]
    assert first.candidates[1].features == {"item_feature_0": 0.97, "item_feature_1": "31af3"}
    assert first.candidates is second.candidates is third.candidates
    # A click of 0 is a posted reward worth 0; an empty cell is no reward at all
    assert [(r.item_id, r.type, r.value) for r in first.rewards] == [("1", "click", 0.0)]
    assert [(r.item_id, r.value) for r in second.rewards] == [("0", 1.0)]
    assert second.rewards[0].timestamp == second.timestamp
    assert third.rewards == []


def test_a_log_written_by_reference_reads_back_equal_and_holds_the_items_once(
    tmp_path: Path,
) -> None:
    records, _ = _import(_obd_like(tmp_path, OBD_ROWS * 20))
    by_reference, inline = io.StringIO(), io.StringIO()
    assert write_jsonl(records, by_reference, by_reference=True) == 60
    write_jsonl(records, inline)
    lines = by_reference.getvalue().splitlines()
    snapshots = [json.loads(line) for line in lines if line.startswith('{"snapshot"')]
    assert len(snapshots) == 1 and len(lines) == 61
    assert [item["id"] for item in snapshots[0]["items"]] == ["0", "1"]
    assert all(json.loads(line)["candidates"] == [] for line in lines[1:])
    assert len(by_reference.getvalue()) < len(inline.getvalue())
    back = list(read_jsonl(io.StringIO(by_reference.getvalue())))
    assert back == records
    assert back == list(read_jsonl(io.StringIO(inline.getvalue())))


def test_a_record_naming_an_unknown_snapshot_is_an_error_naming_its_line(tmp_path: Path) -> None:
    records, _ = _import(_obd_like(tmp_path, OBD_ROWS))
    sink = io.StringIO()
    write_jsonl(records, sink, by_reference=True)
    without_snapshot = "\n".join(sink.getvalue().splitlines()[1:])
    with pytest.raises(ValueError, match=r"line 1: snapshot 'sha256:[0-9a-f]{32}' is not on"):
        list(read_jsonl(io.StringIO(without_snapshot)))


def _record(event: str, candidates: list[LoggedCandidate]) -> DecisionRecord:
    return DecisionRecord(
        event_id=event,
        policy="p",
        timestamp=1.0,
        segment="s",
        candidates=candidates,
        slate=[LoggedSlot(item_id=candidates[0].id, position=1, probability=0.5, explored=False)],
        seed=0,
        exploration=ExplorationLog(budget=0.1, rate=0.1),
    )


_features = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.one_of(st.integers(-5, 5), st.text(max_size=5), st.booleans()),
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(
    lists=st.lists(
        st.lists(
            st.builds(LoggedCandidate, id=st.text(min_size=1, max_size=4), features=_features),
            min_size=1,
            max_size=4,
        ),
        min_size=1,
        max_size=3,
    ),
    picks=st.lists(st.integers(0, 2), min_size=1, max_size=12),
)
def test_any_records_round_trip_by_reference(
    lists: list[list[LoggedCandidate]], picks: list[int]
) -> None:
    # Given records sharing candidate lists (the same list, or an equal copy of it)
    records = [
        _record(f"e{i}", list(lists[pick % len(lists)]) if i % 2 else lists[pick % len(lists)])
        for i, pick in enumerate(picks)
    ]
    sink = io.StringIO()
    write_jsonl(records, sink, by_reference=True)
    # Then each distinct list is written once, and reading gives the records back exactly
    snapshots = [line for line in sink.getvalue().splitlines() if line.startswith('{"snapshot"')]
    distinct = {json.dumps([c.model_dump() for c in r.candidates]) for r in records}
    assert len(snapshots) == len(distinct)
    assert list(read_jsonl(io.StringIO(sink.getvalue()))) == records


def _jsonl_log(directory: Path, lines: list[dict[str, object]], mapping: str) -> Path:
    (directory / "log.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    (directory / "mapping.yaml").write_text(mapping, encoding="utf-8")
    return directory


SLATE_MAPPING = """
policy: feed
columns:
  event_id: id
  action: shown
  position: rank
  propensity: p
  reward: value
  timestamp: at
  user_id: user
  candidates: offered
position_base: 0
propensities: conditional
reward_type: purchase
context: [device, "geo*"]
"""


def test_rows_sharing_an_event_id_are_one_event_with_its_slots_in_position_order(
    tmp_path: Path,
) -> None:
    directory = _jsonl_log(
        tmp_path,
        [
            {"id": "e1", "shown": "b", "rank": 1, "p": 0.25, "at": 10, "offered": ["a", "b", "c"],
             "device": "ios", "geo_country": "fr", "user": "u1", "value": None},
            {"id": "e1", "shown": "a", "rank": 0, "p": 0.5, "at": 10, "offered": ["a", "b", "c"],
             "device": "ios", "geo_country": "fr", "user": "u1", "value": 2.5},
            {"id": "e2", "shown": "c", "rank": 0, "p": 1.0, "at": 11, "offered": "c|a",
             "device": "web", "user": "u2"},
        ],
        SLATE_MAPPING,
    )  # fmt: skip
    mapping, _ = load_mapping(directory / "mapping.yaml")
    report = ImportReport()
    records = list(import_log(read_rows(directory / "log.jsonl", None), mapping, None, report))
    assert (report.rows, report.events, report.rewards) == (3, 2, 1)
    first, second = records
    assert [(s.item_id, s.position, s.probability) for s in first.slate] == [
        ("a", 1, 0.5),
        ("b", 2, 0.25),
    ]
    assert first.propensities == "conditional" and first.user_id == "u1"
    assert first.context == {"device": "ios", "geo_country": "fr"}
    assert [c.id for c in first.candidates] == ["a", "b", "c"]
    assert [(r.item_id, r.type, r.value) for r in first.rewards] == [("a", "purchase", 2.5)]
    assert [c.id for c in second.candidates] == ["c", "a"] and second.context == {"device": "web"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"propensity_score": 0}, r"row 1: column 'propensity_score': 0.0 is not in \(0, 1\]"),
        ({"propensity_score": 1.5}, r"row 1: column 'propensity_score': 1.5 is not in \(0, 1\]"),
        ({"propensity_score": "high"}, r"row 1: column 'propensity_score': 'high' is not a num"),
        ({"item_id": 7}, r"row 1: column 'item_id': item '7' is not among the candidates"),
        ({"item_id": ""}, r"row 1: column 'item_id' is empty"),
        ({"position": 0}, r"row 1: column 'position': 0.0 is not a position \(1-based\)"),
        ({"timestamp": "yesterday"}, r"row 1: column 'timestamp': 'yesterday' is neither"),
        ({"click": "yes"}, r"row 1: column 'click': 'yes' is not a number"),
    ],
)
def test_a_bad_row_is_an_error_naming_its_row_and_column(
    tmp_path: Path, row: dict[str, object], message: str
) -> None:
    good = dict(zip(HEADER[1:], OBD_ROWS[0], strict=True))
    bad = [list({**good, **row}.values())]
    with pytest.raises(LogImportError, match=message):
        _import(_obd_like(tmp_path, bad))


def test_skip_invalid_counts_each_reason_and_keeps_the_good_rows(tmp_path: Path) -> None:
    bad = [[*OBD_ROWS[0][:3], 0, 0.0, *OBD_ROWS[0][5:]], OBD_ROWS[1]]
    directory = _obd_like(tmp_path, [*bad, OBD_ROWS[2]])
    mapping, base = load_mapping(directory / "mapping.yaml")
    assert mapping.items is not None
    report = ImportReport()
    rows = read_rows(directory / "all.csv", None)
    items = load_items(mapping.items, base)
    records = list(import_log(rows, mapping, items, report, skip_invalid=True))
    assert [r.event_id for r in records] == ["obd-2", "obd-3"]
    assert report.skipped == {"propensity outside (0, 1]": 1}


def test_a_mapping_naming_a_missing_column_or_no_candidates_is_refused(tmp_path: Path) -> None:
    directory = _obd_like(tmp_path, OBD_ROWS)
    text = OBD_MAPPING.read_text().replace("propensity: propensity_score", "propensity: pscore")
    (directory / "mapping.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(LogImportError, match=r"log: no column 'pscore' \(columns: , timestamp"):
        _import(directory)
    (directory / "mapping.yaml").write_text(
        "policy: x\ncolumns: {action: a, propensity: p}\n", encoding="utf-8"
    )
    with pytest.raises(LogImportError, match=r"give items .* or columns\.candidates"):
        load_mapping(directory / "mapping.yaml")


def test_serendip_import_writes_the_log_and_says_what_it_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _obd_like(tmp_path, OBD_ROWS)
    out = tmp_path / "decisions.jsonl"
    argv = ["import", str(directory / "all.csv"), "--mapping", str(directory / "mapping.yaml")]
    assert cli([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "imported 3 rows as 3 events (2 rewards, 2 items) of policy 'obd'" in err
    assert out.read_text().startswith('{"snapshot":"sha256:')
    assert [r.event_id for r in read_jsonl(out)] == ["obd-1", "obd-2", "obd-3"]
    # A failed import reports the row and leaves no file behind, not even a partial one
    (directory / "all.csv").write_text(
        (directory / "all.csv").read_text().replace(",0.5,", ",2,", 1), encoding="utf-8"
    )
    failed = tmp_path / "failed.jsonl"
    assert cli([*argv, "--out", str(failed)]) == 2
    assert "serendip import: row 1: column 'propensity_score': 2.0" in capsys.readouterr().err
    assert not failed.exists() and not (tmp_path / "failed.jsonl.partial").exists()


def test_a_spreadsheet_export_with_a_byte_order_mark_imports(tmp_path: Path) -> None:
    (tmp_path / "items.csv").write_text("id\na\nb\n", encoding="utf-8")
    (tmp_path / "log.csv").write_text("id,item,p\n1,a,0.5\n", encoding="utf-8-sig")
    (tmp_path / "mapping.yaml").write_text(
        "policy: x\ncolumns: {event_id: id, action: item, propensity: p}\n"
        "items: {file: items.csv, id: id}\n",
        encoding="utf-8",
    )
    mapping, base = load_mapping(tmp_path / "mapping.yaml")
    assert mapping.items is not None
    rows = read_rows(tmp_path / "log.csv", None)
    (record,) = import_log(rows, mapping, load_items(mapping.items, base), ImportReport())
    assert (record.event_id, record.slate[0].item_id) == ("1", "a")


def test_a_snapshot_whose_items_were_changed_is_refused(tmp_path: Path) -> None:
    records, _ = _import(_obd_like(tmp_path, OBD_ROWS))
    sink = io.StringIO()
    write_jsonl(records, sink, by_reference=True)
    tampered = sink.getvalue().replace('"item_feature_0":0.97', '"item_feature_0":0.5', 1)
    with pytest.raises(ValueError, match=r"line 1: snapshot 'sha256:\w+' does not match"):
        list(read_jsonl(io.StringIO(tampered)))
