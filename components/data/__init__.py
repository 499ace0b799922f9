"""Data sources, the canonical Parquet layout, preprocessing and splits."""
