"""Overrides that shrink the demo profile to a pipeline that trains in seconds (tests only)."""

TINY_PIPELINE = [
    "data.source.n_users=300",
    "data.source.n_items=80",
    "teacher.model.d_model=16",
    "teacher.model.n_layers=1",
    "teacher.train.epochs=2",
    "student.model.d_model=8",
    "student.train.epochs=2",
    "distill.top_k=10",
    "candidates.students=[]",  # one student: the candidates have tests of their own
]
