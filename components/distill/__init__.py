"""Knowledge distillation: losses (``losses.py``), the item-embedding start from the teacher
(``init.py``) and the cache-fed student trainer (``trainer.py``)."""
