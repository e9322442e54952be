"""The compressor: base LM + LoRA, bidirectional chunks, anchor embeddings -> anchor K/V."""
