"""AIPerf plugin for Boson's Higgs Audio server (see bench/README.md).

`wire` is pure (no aiperf import: the project's tests read it); `endpoints` holds the AIPerf classes.
"""
