"""The registry store locked by another writer, or read-only: the write fails with a clear error after
SQLite's bounded wait, no half-registered version is left, and the champion is untouched. (An
unreachable registry: ``tests/components/test_registry.py`` and the nightly flow's tests.)"""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest

from shopdistill.components.config import RegistryConfig
from shopdistill.components.registry import COMPLETE, Registry
from tests.components.test_registry import new_version

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def assert_only_the_champion(registry: Registry) -> None:
    versions = registry.versions()
    assert [v.version for v in versions] == ["1"]
    assert registry.champion().version == "1" and versions[0].tags.get(COMPLETE) == "true"


def test_a_locked_store_fails_the_write_in_bounded_time_and_keeps_the_champion(tmp_path):
    registry = Registry(RegistryConfig(model_name="m"), tmp_path)
    new_version(registry, tmp_path, champion=True)
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    t0 = time.monotonic()
    try:
        with pytest.raises(Exception, match="database is locked"):
            new_version(registry, tmp_path, champion=True, tag="second")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - t0 < 120  # SQLite's busy timeout, not forever
    assert_only_the_champion(registry)


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): mount {' '.join(args)}: {done.stderr.decode().strip()}")


@pytest.fixture
def read_only_view(tmp_path):
    """``(store, view)``: a folder and a read-only bind mount of it (root only), unmounted afterwards."""
    store, view = tmp_path / "store", tmp_path / "view"
    store.mkdir()
    view.mkdir()
    mount("--bind", str(store), str(view))
    try:
        mount("-o", "remount,ro,bind", str(view))
        yield store, view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_a_read_only_store_fails_the_write_and_keeps_the_champion(read_only_view, tmp_path):
    store, view = read_only_view
    new_version(Registry(RegistryConfig(model_name="m"), store), tmp_path, champion=True)
    with pytest.raises(Exception, match="(?i)read-only|readonly") as caught:
        new_version(Registry(RegistryConfig(model_name="m"), view), tmp_path, champion=True, tag="second")
    assert "readonly database" in str(caught.value)
    assert_only_the_champion(Registry(RegistryConfig(model_name="m"), store))
    assert Registry(RegistryConfig(model_name="m"), view).champion().version == "1"  # still readable


def test_a_damaged_champion_artifact_is_exit_4_with_its_version_named(tmp_path, capsys):
    """``recommend`` on a champion whose stored ``best.pt`` no longer matches its digest tag."""
    from shopdistill.components.artifacts import sha256_file
    from shopdistill.flows.cli import main
    from tests.components.test_registry import student_files

    registry = Registry(RegistryConfig(), tmp_path)
    files = student_files(tmp_path)
    run_id = registry.log_run(run_name="r", params={}, metrics={}, tags={}, artifacts={}, student_files=files)
    digest = sha256_file(files["best.pt"])
    registry.register(run_id, {"student_digest": digest}, make_champion=True)
    stored = next((tmp_path / "mlruns").rglob("student/best.pt"))
    stored.write_bytes(b"flipped")
    assert main(["recommend", "--user", "u1", "--set", f"runtime.output_dir={tmp_path}"]) == 4
    err = capsys.readouterr().err
    assert "v1" in err and "does not match its recorded sha256" in err and "Traceback" not in err
