"""The ``sac-rag`` command line."""
