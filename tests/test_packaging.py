"""A real, non-editable install: the wheel, a fresh venv, the profiles as package data."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_wheel_installs_under_one_namespace_and_prepares_the_demo(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("shopdistill-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("shopdistill-")}
    assert tops == {"shopdistill"}, tops
    assert "shopdistill/profiles/demo.yaml" in names and "shopdistill/profiles/beauty.yaml" in names
    venv = tmp_path / "venv"
    # the fresh venv sees this environment's packages (torch, prefect, ...) but not the project
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120
    )
    py = venv / "bin" / "python"
    site = subprocess.run(
        [sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (
        venv
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
        / "parent.pth"
    ).write_text(site + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run(
        [str(venv / "bin" / "shopdistill"), "data", "prepare", "--profile", "demo"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONNOUSERSITE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "validation   passed" in out.stdout
    installed = subprocess.run(
        [
            str(py),
            "-c",
            "import shopdistill.components, pathlib; print(pathlib.Path(shopdistill.components.__file__).parent)",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(ROOT) not in installed, installed  # the wheel's copy, not the checkout
    assert (work / "data" / "datasets").is_dir()  # outputs land under the working directory's data/
    assert not list(Path(installed).parent.rglob("datasets"))  # nothing written into site-packages
