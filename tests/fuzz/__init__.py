"""Helpers of tests/test_fuzz.py: seed files and their mutations (``files``),
malformed-tensor cases for converters and layers (``tensors``), and the
guards every fuzzed call runs under (``guard``)."""
