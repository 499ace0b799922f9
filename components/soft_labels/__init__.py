"""The teacher's soft labels, cached as Parquet so students never need the teacher.

``format.py`` is the file format, ``writer.py`` builds a cache (the ``cache_soft_labels`` stage),
``reader.py`` streams one.
"""

from shopdistill.components.soft_labels.format import SoftLabelBlock, SoftLabelCacheError, verify_soft_labels
from shopdistill.components.soft_labels.reader import SoftLabelReader
from shopdistill.components.soft_labels.writer import cache_soft_labels, teacher_item_embeddings

__all__ = [
    "SoftLabelBlock",
    "SoftLabelCacheError",
    "SoftLabelReader",
    "cache_soft_labels",
    "teacher_item_embeddings",
    "verify_soft_labels",
]
