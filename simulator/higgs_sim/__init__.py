"""Higgs Audio v2 server simulator: a test double of Boson's vLLM server."""

__version__ = "0.1.0"
