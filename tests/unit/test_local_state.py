"""Per-stack state files and data directories (local.state, local.stack_data, local.target)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from local.stack_data import DEMO_KEY_FILE, DataInUseError, StackData
from local.state import (
    STATE_DIR_ENV,
    LocalState,
    check_stack_name,
    clear_stale,
    find_by_url,
    read_state,
    recorded_states,
    state_path,
    write_state,
)
from local.target import configure_target


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    return tmp_path


def a_stack(name: str, port: int, pid: int | None = None) -> LocalState:
    return LocalState(
        url=f"http://127.0.0.1:{port}",
        moto_endpoint="http://127.0.0.1:1",
        api_key="sk_x",
        webhook_secret="whsec_x",
        pid=os.getpid() if pid is None else pid,
        region="us-east-1",
        name=name,
    )


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_each_stack_has_its_own_state_file(state_dir: Path) -> None:
    write_state(a_stack("one", 3001))
    write_state(a_stack("two", 3002))
    assert state_path("one") == state_dir / "stacks" / "one.json"
    assert (state_path("one").stat().st_mode & 0o777) == 0o600
    assert read_state("one") == a_stack("one", 3001)
    assert [s.name for s in recorded_states()] == ["one", "two"]
    assert read_state() is None  # no "default" stack


def test_a_stack_is_found_by_its_url_whatever_the_loopback_spelling() -> None:
    write_state(a_stack("one", 3001))
    found = find_by_url("http://localhost:3001/")
    assert found is not None and found.name == "one"
    assert find_by_url("http://127.0.0.1:3999") is None


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-x", "x" * 64])
def test_a_stack_name_cannot_leave_the_state_directory(name: str) -> None:
    with pytest.raises(ValueError, match="stack name"):
        check_stack_name(name)


def test_a_stale_state_file_is_removed_and_a_live_one_kept() -> None:
    write_state(a_stack("gone", 3001, pid=dead_pid()))
    write_state(a_stack("alive", 3002))
    assert clear_stale(read_state("gone")) is True  # type: ignore[arg-type]
    assert clear_stale(read_state("alive")) is False  # type: ignore[arg-type]
    assert [s.name for s in recorded_states()] == ["alive"]


def target(**chosen: str | None) -> argparse.Namespace:
    return argparse.Namespace(**{"stack": None, "url": None, "cfn_stack": None, **chosen})


def test_a_named_stack_that_is_not_running_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        configure_target(target(stack="other"))
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "'other' is not running" in err and "serendip serve --stack other" in err


def test_an_unknown_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        configure_target(target(url="http://127.0.0.1:9"))
    assert refused.value.code == 2
    assert "no local stack is recorded at http://127.0.0.1:9" in capsys.readouterr().err


def test_a_stale_default_stack_is_reported_and_the_ambient_configuration_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_state(a_stack("default", 3001, pid=dead_pid()))
    monkeypatch.setenv("KEYS_TABLE", "keys")
    assert configure_target(target()) == "the ambient AWS configuration"
    err = capsys.readouterr().err
    assert "'default' was not stopped cleanly" in err
    assert "using the ambient AWS configuration" in err
    assert read_state() is None


def test_a_data_directory_keeps_the_demo_key_and_serves_one_stack(tmp_path: Path) -> None:
    data = StackData(tmp_path / "data")
    data.lock()
    first = data.demo_key(None, None)
    assert data.demo_key(None, None) == first
    assert data.demo_key("sk_given", None) == ("sk_given", first[1])
    with pytest.raises(DataInUseError, match="in use"):
        StackData(tmp_path / "data").lock()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    data.clear()
    assert not (tmp_path / "data" / DEMO_KEY_FILE).exists()
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"
    data.unlock()
    again = StackData(tmp_path / "data")
    again.lock()
    again.unlock()
