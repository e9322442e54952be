"""Text -> token sequences -> chunks and anchor layout (pure functions, no model)."""
