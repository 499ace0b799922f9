"""Training: the loop (``loop.py``), its hard-label loss (``losses.py``), the teacher stage (``teacher.py``)."""
