"""Evaluation of SAC against baselines on extractive QA (``sac-rag eval``); see docs/evaluation.md."""
