"""Test support shared by every suite, loaded as a pytest plugin (``-p tests.support.plugin``)."""
