"""One model stage in its own process, for the kill -9 tests: ``python -m tests.faults.stage_worker
STAGE ROOT [--slow SECONDS]``. Stages: teacher, soft_labels, student (each builds what it needs first).

``--slow`` sleeps in each epoch (or soft-label row group) of STAGE, so a test can kill it mid-way.
Progress goes to stdout: the training loop's epoch lines and ``soft-label groups written N``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from shopdistill.components.config import load_config
from shopdistill.components.data.dataset import prepare_dataset
from shopdistill.components.distill.student import distill_student
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels import writer
from shopdistill.components.training import loop
from shopdistill.components.training.teacher import train_teacher
from tests.tiny import TINY_PIPELINE

EPOCHS = 8


def _slow_epochs(seconds: float) -> None:
    real = loop._train_epoch

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    loop._train_epoch = slow


def _slow_groups(seconds: float) -> None:
    real = writer.pq.ParquetWriter.write_table
    count = {"n": 0}

    def slow(self, table, *args, **kwargs):
        real(self, table, *args, **kwargs)
        count["n"] += 1
        print(f"soft-label groups written {count['n']}", flush=True)
        time.sleep(seconds)

    writer.pq.ParquetWriter.write_table = slow


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=["teacher", "soft_labels", "student"])
    parser.add_argument("root", type=Path)
    parser.add_argument("--slow", type=float, default=0.0)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s", force=True)
    epochs = [f"teacher.train.epochs={EPOCHS}", f"student.train.epochs={EPOCHS}"]
    patience = ["teacher.train.patience=100", "student.train.patience=100"]
    cfg = load_config(profile="demo", overrides=[*TINY_PIPELINE, *epochs, *patience])
    dataset = prepare_dataset(cfg.data, args.root, validate=False).handle
    data = SequenceData.from_path(dataset.uri)
    if args.slow and args.stage == "teacher":
        _slow_epochs(args.slow)
    teacher, run = train_teacher(cfg.teacher, data, dataset.sha256, args.root, "tiny", 0)
    if args.stage == "teacher":
        return 0
    if args.slow and args.stage == "soft_labels":
        _slow_groups(args.slow)
    cache, _, _ = writer.cache_soft_labels(
        teacher,
        data,
        args.root,
        teacher_digest=run.checkpoint_sha256,
        dataset_digest=dataset.sha256,
        max_len=cfg.teacher.model.max_len,
        top_k=cfg.distill.top_k,
        users_per_group=16,
    )
    if args.stage == "soft_labels":
        return 0
    if args.slow:
        _slow_epochs(args.slow)
    distill_student(
        data,
        cfg.student.model,
        cfg.student.train,
        cfg.distill,
        args.root,
        dataset_digest=dataset.sha256,
        cache=cache,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
