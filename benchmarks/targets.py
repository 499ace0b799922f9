"""The targets the benchmarks check, in one place.

A benchmark reports each as a row of its ``targets`` / ``checks`` table; a missed one exits 3.
"""

# Amazon Beauty, leave-one-out, full ranking: the ensemble teacher must be a strong model by the
# published full-ranking numbers on this file (SASRec with full cross-entropy 0.039-0.042 NDCG@10).
TEACHER_MIN_NDCG = 0.052
