"""Load-test measurement, shapes and reports for Higgs Audio servers."""
