"""Bad input across configuration, data and command line: each gets a specific message and the
documented exit code (README, "exit code"), and nothing is trained or registered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shopdistill.flows.cli import main

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BASE_TS = 1_700_000_000
HEADER = "timestamp,visitorid,event,itemid,price"
TINY = ["--set", "data.source.n_users=300", "--set", "data.source.n_items=80"]


def rows(
    n_users: int = 30, per_user: int = 5, price: str = "{item}.5", ts: Callable[[int], int] | None = None
):
    out = []
    for u in range(n_users):
        for k in range(per_user):
            item = (u * 7 + k * 3) % 20
            t = ts(u * 10 + k) if ts else BASE_TS + u * 1000 + k * 60
            out.append(f"{t},{u},view,{item},{price.format(item=item)}")
    return out


def event_log(tmp: Path, lines: list[str] | bytes, name: str = "events.csv", **source: str) -> list[str]:
    """A configuration file for an event log at ``tmp/name``; returns the CLI arguments."""
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    (tmp / name).write_bytes(data)
    extra = "".join(f"\n    {k}: {v}" for k, v in source.items())
    (tmp / "shop.yaml").write_text(
        f"""data:
  name: shop
  source:
    kind: event_log
    path: {name}
    columns: {{user: visitorid, item: itemid, timestamp: timestamp, event: event, price: price}}{extra}
  validation: {{min_users: 10, min_items: 10, min_interactions: 100}}
"""
    )
    return ["--config", str(tmp / "shop.yaml")]


def yaml_file(tmp: Path, text: str, name: str = "shop.yaml") -> list[str]:
    (tmp / name).write_text(text)
    return ["--config", str(tmp / name)]


def non_utf8(tmp: Path) -> list[str]:
    good = rows(n_users=400, per_user=10)
    head = ("\n".join([HEADER, *good]) + "\n").encode()
    return event_log(tmp, head + b"\xff" + b"1,2,view,3,4\n")


def missing_log(tmp: Path) -> list[str]:
    args = event_log(tmp, [HEADER, *rows()])
    (tmp / "events.csv").unlink()
    return args


CASES: list[tuple[str, Callable[[Path], list[str]], int, str]] = [
    # configuration: exit 2
    (
        "a value of the wrong type",
        lambda t: ["run", "--set", "student.model.d_model=abc"],
        2,
        "student.model.d_model",
    ),
    (
        "an unknown key",
        lambda t: ["run", "--set", "student.model.widht=8"],
        2,
        "student.model.widht: unknown key",
    ),
    ("an unknown profile", lambda t: ["run", "--profile", "nope"], 2, "unknown profile 'nope'"),
    ("a missing configuration file", lambda t: ["run", "--config", str(t / "absent.yaml")], 2, "absent.yaml"),
    ("a file that is not YAML", lambda t: ["run", *yaml_file(t, "data: [unclosed\n")], 2, "shop.yaml"),
    (
        "an override without =",
        lambda t: ["run", "--set", "distill.temperature"],
        2,
        "must look like key=value",
    ),
    (
        "a negative temperature",
        lambda t: ["run", "--set", "distill.temperature=-1"],
        2,
        "distill.temperature",
    ),
    (
        "width not divisible by heads",
        lambda t: ["run", "--set", "teacher.model.d_model=30", "--set", "teacher.model.n_heads=4"],
        2,
        "divisible",
    ),
    ("an empty model name", lambda t: ["run", "--set", "registry.model_name="], 2, "registry.model_name"),
    (
        "an invalid synthetic start",
        lambda t: ["run", "--set", "data.source.start=yesterday"],
        2,
        "data.source.start",
    ),
    ("an extends cycle", lambda t: ["run", *yaml_file(t, "extends: shop.yaml\n")], 2, "extends: cycle"),
    (
        "an unknown split",
        lambda t: ["run", "--set", "data.preprocess.split=random"],
        2,
        "data.preprocess.split",
    ),
    (
        "a gate ratio that is not a number",
        lambda t: ["run", "--set", "gate.min_ratio_to_teacher=high"],
        2,
        "gate.min_ratio_to_teacher",
    ),
    ("a 50 MB override", lambda t: ["run", "--set", "x" * 50_000_000], 2, "50,000,000 characters"),
    (
        "both a profile and a file",
        lambda t: ["run", "--profile", "demo", "--config", "x.yaml"],
        2,
        "not allowed with",
    ),
    # command line: exit 2
    ("recommend --k 0", lambda t: ["recommend", "--user", "u1", "--k", "0"], 2, "--k"),
    ("recommend --k -5", lambda t: ["recommend", "--user", "u1", "--k", "-5"], 2, "--k"),
    ("recommend --k 1001", lambda t: ["recommend", "--user", "u1", "--k", "1001"], 2, "--k"),
    ("an unknown command", lambda t: ["retrain"], 2, "invalid choice: 'retrain'"),
    # data: exit 1
    ("a missing event log", lambda t: ["data", "prepare", *missing_log(t)], 1, "not found"),
    ("an empty event log", lambda t: ["data", "prepare", *event_log(t, b"")], 1, "is empty"),
    (
        "the wrong delimiter",
        lambda t: ["data", "prepare", *event_log(t, [r.replace(",", ";") for r in [HEADER, *rows()]])],
        1,
        "delimiter",
    ),
    (
        "a missing column",
        lambda t: ["data", "prepare", *event_log(t, [HEADER.replace("itemid", "product"), *rows()])],
        1,
        "itemid",
    ),
    (
        "a byte that is not UTF-8, deep in the file",
        lambda t: ["data", "prepare", *non_utf8(t)],
        1,
        "(line 4,002)",
    ),
    (
        "a price that is not a number",
        lambda t: ["data", "prepare", *event_log(t, [HEADER, *rows(price="cheap")])],
        1,
        "not numbers",
    ),
    (
        "negative prices",
        lambda t: ["data", "prepare", *event_log(t, [HEADER, *rows(price="-{item}")])],
        1,
        "prices are >= 0",
    ),
    (
        "events in the future",
        lambda t: ["data", "prepare", *event_log(t, [HEADER, *rows(ts=lambda i: 4_000_000_000 + i)])],
        1,
        "future",
    ),
    (
        "a 50 MB field in a bad row",
        lambda t: [
            "data",
            "prepare",
            *event_log(t, [HEADER, *rows()[:-1], f"{BASE_TS},7,view,1,{'x' * 50_000_000}"]),
        ],
        1,
        "characters",
    ),
    (
        "histories too short to split",
        lambda t: ["data", "prepare", *event_log(t, [HEADER, *rows(n_users=3, per_user=2)])],
        1,
        "no user has the 3 interactions",
    ),
    (
        "a Parquet file that is not Parquet",
        lambda t: ["data", "prepare", *event_log(t, b"PAR1 not really", name="events.parquet")],
        1,
        "not a readable Parquet file",
    ),
    (
        "an Amazon folder that is not there",
        lambda t: [
            "data",
            "prepare",
            *yaml_file(t, "data:\n  name: a\n  source: {kind: amazon, path: nowhere}\n"),
        ],
        1,
        "nowhere",
    ),
    # registry: exit 4
    ("recommend without a champion", lambda t: ["recommend", "--user", "u0000003"], 4, "no champion"),
    ("promote an unknown version", lambda t: ["promote", "99"], 4, "99"),
]


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv, code, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named_and_nothing_is_trained_or_registered(
    argv, code, message, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "out"
    monkeypatch.setenv("SHOPDISTILL_DATA_DIR", str(root))
    args = argv(tmp_path)
    try:
        got = main(args)
    except SystemExit as exc:  # argparse's own usage errors
        got = exc.code
    captured = capsys.readouterr()
    err = captured.err + captured.out
    assert got == code, err[-2000:]
    assert message in err, err[-2000:]
    assert len(err) < 20_000  # a huge value is never echoed whole
    assert "Traceback" not in err
    for kind in ("teachers", "students", "soft_labels", "exports", "mlruns", "datasets"):
        assert not (root / kind).exists() or not any((root / kind).iterdir()), kind
    if code != 4:  # asking the registry creates its (empty) store; nothing else may
        assert not (root / "mlflow.db").exists()
