"""Benchmark evaluation: dataset loaders, the GAR metrics, the resumable runner."""
