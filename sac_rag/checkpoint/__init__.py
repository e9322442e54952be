"""Checkpoints: sac_rag's own format (PEFT-style safetensors) and the official release's adapter.pt."""
