"""Reproducible validation report for BitCPM4-0.5B (MiniCPM, ternary QAT) on vLLM / vLLM-Ascend."""

__version__ = "0.1.0"
