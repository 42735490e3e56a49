"""Measurements: parameters, time, memory. Each returns rows of rnnbench.results.Row."""
