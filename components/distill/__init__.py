"""Knowledge distillation: losses (``losses.py``) and the cache-fed student trainer (``trainer.py``)."""
