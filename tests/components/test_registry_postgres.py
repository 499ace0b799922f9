"""MLflow on PostgreSQL, for teams with concurrent writers (``registry.tracking_uri:
postgresql://...``, the ``[postgres]`` extra: psycopg). The test starts Debian's PostgreSQL itself, on loopback,
in a temporary folder, and stops it; it skips with the reason where PostgreSQL or psycopg is absent."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shopdistill.components.config import RegistryConfig
from shopdistill.components.registry import Registry
from tests.components.test_registry import new_version

pytestmark = pytest.mark.slow


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_uri():
    """``postgresql://postgres@127.0.0.1:PORT/mlflow`` of a server started for this module."""
    pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # it refuses root
    home = Path(tempfile.mkdtemp(prefix="shopdistill-pg-"))
    if as_postgres:
        shutil.chown(home, "postgres")
    data, port = home / "data", _free_port()

    def run(*argv: str) -> None:
        subprocess.run([*as_postgres, *argv], check=True, capture_output=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home}"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-w",
        "-t",
        "60",
        "-l",
        str(home / "log"),
        "start",
    )
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
        yield f"postgresql://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], timeout=60
        )
        shutil.rmtree(home, ignore_errors=True)


def test_versions_aliases_and_artifacts_on_postgres(postgres_uri, tmp_path):
    registry = Registry(RegistryConfig(model_name="pg-model", tracking_uri=postgres_uri), tmp_path)
    first = new_version(registry, tmp_path, champion=True)
    assert registry.champion().version == first.version == "1"
    second = new_version(registry, tmp_path, champion=False, tag="y")
    assert registry.promote(second.version).version == "2" and registry.rollback().version == "1"
    folder = registry.download_student(registry.champion(), tmp_path / "dl")
    assert (folder / "best.pt").read_bytes() == b"best.pt"


def test_writers_on_two_machines_register_at_the_same_moment(postgres_uri, tmp_path):
    """Two processes with separate data folders (two machines) and one PostgreSQL registry: both
    versions land, numbered without a clash."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from shopdistill.components.config import RegistryConfig\n"
        "from shopdistill.components.registry import Registry\n"
        "from tests.components.test_registry import new_version\n"
        "root = Path(sys.argv[2])\n"
        "registry = Registry(RegistryConfig(model_name='pg-race', tracking_uri=sys.argv[1]), root)\n"
        "print(new_version(registry, root, champion=False, tag=root.name).version)\n"
    )
    procs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        argv = [sys.executable, "-c", script, postgres_uri, str(tmp_path / name)]
        procs.append(
            subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2]
            )
        )
    out = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-2000:] for _, err in out]
    assert sorted(o.decode().strip() for o, _ in out) == ["1", "2"]
