"""Higgs Audio v2 server simulator: a test double of Boson's vLLM server."""
