"""Benchmarks and the quality study. They import the components; nothing in the product imports them."""
