"""Benchmark data preparation (VGGSound-Duet)."""
