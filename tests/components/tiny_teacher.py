"""A tiny teacher's settings and soft-label cache, shared by the soft-label and distillation tests."""

from shopdistill.components.config import ModelConfig
from shopdistill.components.soft_labels import cache_soft_labels

TEACHER = ModelConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.0, max_len=20)
DATA = "d" * 64  # the dataset digest the student stores are keyed by
STUDENT = ModelConfig(d_model=8, n_layers=1, n_heads=1, dropout=0.1, max_len=20)


def build(teacher, data, root, **kw):
    args = dict(teacher_digest="t" * 64, dataset_digest="d" * 64, max_len=20, top_k=10, users_per_group=64)
    args.update(kw)
    return cache_soft_labels(teacher, data, root, **args)
