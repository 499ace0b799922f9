"""Load test of the recommendation service (``shopdistill bench serve``).

The service runs as ``shopdistill serve-api`` in a process of its own on loopback; an asyncio loop of
aiohttp clients drives it, bounded in requests and seconds, at each concurrency. Each request posts a
session of 1-10 products drawn from the served catalogue. Measured per (model, concurrency): p50 /
p95 / p99 latency seen by the client, throughput, errors, and the server's CPU (share of one core)
and peak RSS. Served are the champion student through its ONNX export (fp32 and int8) and, through
the same app with torch, the teacher it was distilled from. Last, ``reloads`` forced hot reloads
(``POST /admin/reload?force=true``: load, check and swap) while the student is under load at
concurrency 8; every request must still succeed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import psutil
import yaml

from shopdistill.components.artifacts import sha256_file, write_json_atomic
from shopdistill.components.config import PipelineConfig
from shopdistill.components.models.checkpoint import ENSEMBLE_FILE
from shopdistill.components.registry import Registry

CONCURRENCY = (1, 8, 32)
TARGET_P99_MS = 15.0  # student (ONNX) at concurrency 8
TARGET_SPEEDUP = 10.0  # student throughput over the teacher's at concurrency 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_config(config: PipelineConfig, out: Path) -> Path:
    """A configuration file with the registry and data folder the service needs (one thread)."""
    path = out / "service.yaml"
    runtime = {"output_dir": str(config.runtime.root), "threads": 1}
    path.write_text(yaml.safe_dump({"registry": config.registry.model_dump(mode="json"), "runtime": runtime}))
    return path


class Server:
    """``shopdistill serve-api`` in its own process, until :meth:`stop`."""

    def __init__(self, config_file: Path, *extra: str, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "shopdistill.flows.cli", "serve-api", "--config", str(config_file)]
        argv += ["--port", str(self.port), "--poll", "0", *extra]
        self.log = log.open("w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve-api exited with {self.proc.returncode}: see {log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"serve-api was not ready within 120 s: see {log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def _drive(
    url: str, sessions: list[list[str]], concurrency: int, requests: int, seconds: float
) -> dict:
    """``concurrency`` clients posting sessions until ``requests`` are sent or ``seconds`` pass
    (aiohttp: far fewer client CPU cycles per request than httpx, which shares the cores)."""
    latencies: list[float] = []
    errors = 0
    tickets = iter(range(requests))
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(30)) as client:

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = np.random.default_rng(seed)
            for _ in tickets:  # one shared budget: a single-threaded loop hands out each ticket once
                if time.perf_counter() > deadline:
                    return
                body = {"items": sessions[int(rng.integers(len(sessions)))], "k": 10}
                t0 = time.perf_counter()
                try:
                    async with client.post("/recommend", json=body) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 1) if wall else 0.0,
        **{f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)},
    }


def _measure(
    server: Server, sessions: list[list[str]], concurrency: int, requests: int, seconds: float
) -> dict:
    asyncio.run(_drive(server.url, sessions, concurrency, 20, 10))  # warm-up
    before, t0 = server.ps.cpu_times(), time.perf_counter()
    row = asyncio.run(_drive(server.url, sessions, concurrency, requests, seconds))
    after, wall = server.ps.cpu_times(), time.perf_counter() - t0
    cpu = (after.user - before.user + after.system - before.system) / wall
    return {
        **row,
        "server_cpu_cores": round(cpu, 2),
        "server_rss_mb": round(server.ps.memory_info().rss / 2**20, 1),
    }


async def _reloads_under_load(url: str, sessions: list[list[str]], reloads: int, requests: int) -> dict:
    async def reload_all() -> list[bool]:
        done = []
        async with httpx.AsyncClient(base_url=url, timeout=120) as admin:
            for _ in range(reloads):
                await asyncio.sleep(0.2)
                done.append((await admin.post("/admin/reload", params={"force": "true"})).json()["reloaded"])
        return done

    load = asyncio.create_task(_drive(url, sessions, 8, requests, 600))
    swapped = await reload_all()
    row = await load
    return {**row, "reloads": len(swapped), "reloads_ok": sum(swapped)}


def _sessions(url: str, n: int = 500) -> list[list[str]]:
    products = [p["id"] for p in httpx.get(f"{url}/catalogue/sample", params={"n": 200}).json()["products"]]
    rng = np.random.default_rng(0)
    return [list(rng.choice(products, size=int(rng.integers(1, 11)))) for _ in range(n)]


def _teacher_checkpoint(config: PipelineConfig, digest: str) -> Path | None:
    """The stored teacher the champion was distilled from: a ``best.pt``, or an ensemble's record
    (whose digest is that of its members' digests)."""
    teachers = config.runtime.root / "teachers"
    for path in sorted(teachers.glob(f"*/{ENSEMBLE_FILE}")):
        if json.loads(path.read_text()).get("digest") == digest:
            return path
    for path in sorted(teachers.glob("*/best.pt")):
        if sha256_file(path) == digest:
            return path
    return None


def _serve(
    config_file: Path, out: Path, name: str, extra: list[str], sessions, args: dict
) -> dict[str, dict]:
    server = Server(config_file, *extra, log=out / f"serve-{name}.log")
    try:
        sessions = sessions or _sessions(server.url)
        rows = {str(c): _measure(server, sessions, c, args["requests"], args["seconds"]) for c in CONCURRENCY}
        if name == "student-onnx" and args["reloads"]:
            rows["reloads"] = asyncio.run(
                _reloads_under_load(server.url, sessions, args["reloads"], args["requests"])
            )
    finally:
        server.stop()
    return {"rows": rows, "sessions": sessions}


def run_serve_benchmark(
    config: PipelineConfig,
    out: Path,
    *,
    version: str | None = None,
    requests: int = 2000,
    seconds: float = 20.0,
    reloads: int = 10,
) -> dict[str, Any]:
    """The champion student, or registered ``version``, through ONNX fp32 and int8, and its teacher
    through torch, under load; see the module."""
    registry = Registry(config.registry, config.runtime.root)
    served = registry.version(version) if version else registry.champion()
    if served is None:
        raise RuntimeError("no champion registered yet: run `shopdistill run` first")
    out.mkdir(parents=True, exist_ok=True)
    config_file = _service_config(config, out)
    args = {"requests": requests, "seconds": seconds, "reloads": reloads}
    pin = ["--version", served.version] if version else []
    models = {
        "student-onnx": ["--engine", "onnx", *pin],
        "student-onnx-int8": ["--engine", "onnx-int8", *pin],
    }
    teacher = _teacher_checkpoint(config, served.tags.get("teacher_digest", ""))
    if teacher is not None:
        models["teacher-torch"] = ["--checkpoint", str(teacher), "--version", served.version]
    results, sessions = {}, None
    for name, extra in models.items():
        run = _serve(config_file, out, name, extra, sessions, args)
        results[name], sessions = run["rows"], run["sessions"]
    result = {"version": served.version, "aliases": sorted(served.aliases), "teacher": str(teacher)}
    result |= {"results": results, "targets": _targets(results)}
    write_json_atomic(out / "serve.json", result)
    (out / "serve.md").write_text(_markdown(result) + "\n")
    return result


def _targets(results: dict[str, dict]) -> list[dict]:
    student = results["student-onnx"]
    rows = [r for m in results.values() for k, r in m.items()]
    targets = [
        {
            "name": "student (ONNX) p99 <= 15 ms at concurrency 8",
            "value": student["8"]["p99_ms"],
            "passed": student["8"]["p99_ms"] <= TARGET_P99_MS,
        },
        {
            "name": "zero errors",
            "value": sum(r["errors"] for r in rows),
            "passed": all(r["errors"] == 0 for r in rows),
        },
    ]
    if "reloads" in student:
        r = student["reloads"]
        targets.append(
            {
                "name": "every reload under load swapped, no request failed",
                "value": f"{r['reloads_ok']}/{r['reloads']} reloads, {r['errors']} failed",
                "passed": r["reloads_ok"] == r["reloads"] and r["errors"] == 0,
            }
        )
    if "teacher-torch" in results:
        ratio = student["8"]["throughput_rps"] / results["teacher-torch"]["8"]["throughput_rps"]
        targets.append(
            {
                "name": "student throughput >= 10x the teacher's at concurrency 8",
                "value": round(ratio, 1),
                "passed": ratio >= TARGET_SPEEDUP,
            }
        )
    return targets


def _markdown(result: dict[str, Any]) -> str:
    head = "| model | concurrency | requests | errors | p50 ms | p95 ms | p99 ms | req/s | server CPU (cores) | server RSS MB |"
    aliases = ", ".join(result["aliases"]) or "no alias"
    lines = [f"Student: v{result['version']} ({aliases}); teacher: {result['teacher']}", ""]
    lines += [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, rows in result["results"].items():
        for level, r in rows.items():
            lines.append(
                f"| {model} | {level if level != 'reloads' else '8, with reloads'} | {r['requests']:,} | "
                f"{r['errors']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | {r['throughput_rps']:,} | "
                f"{r.get('server_cpu_cores', '')} | {r.get('server_rss_mb', '')} |"
            )
    lines += ["", "| target | value | passed |", "|---|---|---|"]
    lines += [f"| {t['name']} | {t['value']} | {'yes' if t['passed'] else 'no'} |" for t in result["targets"]]
    return "\n".join(lines)
