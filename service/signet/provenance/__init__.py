"""Provenance by retrieval: fingerprints of generations, exact nearest-neighbour search, and
the significance of a match against a store of N records (pure numpy, no I/O)."""
