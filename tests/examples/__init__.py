"""Tests of the bundled example applications (``examples/``)."""
