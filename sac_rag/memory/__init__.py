"""Memory chunks (anchor K/V), their RoPE re-positioning, and their composition into a cache."""
