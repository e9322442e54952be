"""Decoding over memories: the base model (adapter off) reads composed anchor K/V as its past."""
