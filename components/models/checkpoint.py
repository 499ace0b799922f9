"""Stored model checkpoints: a state dict plus the config to rebuild it, and ensemble records.

``best.pt`` holds ``{"state_dict", "config", "n_items", "meta"}`` and loads with
``torch.load(weights_only=True)``: no pickled objects, so a tampered file cannot run code. An ensemble
teacher is an ``ensemble.json`` record of its members' checkpoints and their digests.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from shopdistill.components.artifacts import atomic_file, sha256_file, sha256_json
from shopdistill.components.config import ModelConfig


def save_model(path: Path, model: nn.Module, cfg: ModelConfig, n_items: int, meta: dict | None = None) -> str:
    """A state dict plus the config needed to rebuild it (loadable with ``weights_only=True``)."""
    with atomic_file(path) as tmp:
        torch.save(
            {
                "state_dict": model.state_dict(),
                "config": cfg.model_dump(),
                "n_items": n_items,
                "meta": meta or {},
            },
            tmp,
        )
        digest = sha256_file(tmp)  # of what this call wrote, whoever else writes the same path
    return digest


class CheckpointError(ValueError):
    """A stored checkpoint is missing, damaged or not the one its handle or record names."""


def stored_digest(path: Path, meta: dict, state: dict[str, torch.Tensor]) -> str | None:
    """The digest of ``path`` when it holds exactly the best weights ``state`` (from ``last.pt``) with
    ``meta``, else None: a damaged, truncated or changed ``best.pt`` is written again."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is rewritten
        return None
    stored = blob.get("meta", {})
    if any(stored.get(k) != meta[k] for k in ("fingerprint", "best_epoch")):
        return None
    weights = blob.get("state_dict", {})
    if weights.keys() != state.keys() or not all(torch.equal(weights[k], state[k]) for k in state):
        return None
    return sha256_file(path)


def verify_digest(path: str | Path, expected: str | None) -> None:
    """Raise :class:`CheckpointError` unless ``path`` exists and its sha256 is ``expected`` (when given)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    if expected is not None and sha256_file(path) != expected:
        raise CheckpointError(
            f"checkpoint {path} does not match its recorded sha256 {expected[:12]}: it changed or is "
            "damaged; run the stage that wrote it again"
        )


def load_model(path: str | Path, sha256: str | None = None) -> tuple[nn.Module, ModelConfig, dict]:
    """Rebuild a model saved by :func:`save_model` without unpickling arbitrary objects; with
    ``sha256``, only after the file's digest matched it."""
    from shopdistill.components.models import build_model

    verify_digest(path, sha256)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a refused pickle, a truncated zip, not a checkpoint
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded as weights only: {first}") from None
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise CheckpointError(f"checkpoint {path} is not a shopdistill model checkpoint")
    cfg = ModelConfig(**blob["config"])
    model = build_model(cfg, blob["n_items"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, cfg, blob.get("meta", {})


ENSEMBLE_FILE = "ensemble.json"


def write_ensemble(path: str | Path, members: list[tuple[Path, str]]) -> str:
    """Record an ensemble teacher as ``path/ensemble.json`` (member checkpoints and digests).

    Returns the ensemble's digest: the sha256 of its members' digests in order.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    digests = [d for _, d in members]
    digest = sha256_json({"ensemble": digests})
    body = {"members": [{"checkpoint": str(p), "sha256": d} for p, d in members], "digest": digest}
    with atomic_file(path / ENSEMBLE_FILE) as tmp:
        tmp.write_text(json.dumps(body, indent=2))
    return digest


def load_teacher(path: str | Path, sha256: str | None = None) -> nn.Module:
    """A teacher checkpoint (``best.pt``) or an ensemble record (``ensemble.json`` or its folder).

    Every member's checkpoint digest is checked against the record, so a retrained or damaged member
    is noticed; with ``sha256`` the checkpoint, or the record's digest, must match it too.
    """
    from shopdistill.components.models.ensemble import Ensemble

    path = Path(path)
    if path.is_dir():
        path = path / ENSEMBLE_FILE
    if path.name != ENSEMBLE_FILE:
        return load_model(path, sha256)[0]
    verify_digest(path, None)
    body = json.loads(path.read_text())
    digests = [m["sha256"] for m in body["members"]]
    if sha256_json({"ensemble": digests}) != body["digest"] or (
        sha256 is not None and body["digest"] != sha256
    ):
        raise CheckpointError(
            f"ensemble record {path} does not match its recorded digest; retrain the teacher"
        )
    members = []
    for m in body["members"]:
        if not Path(m["checkpoint"]).is_file() or sha256_file(m["checkpoint"]) != m["sha256"]:
            raise CheckpointError(
                f"ensemble member {m['checkpoint']} changed since {path} was written; retrain the teacher"
            )
        members.append(load_model(m["checkpoint"])[0])
    return Ensemble(members).eval()
