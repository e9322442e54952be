"""Training SAC compressors (and the raw-context Full-FT reference): ``sac-rag train``, docs/training.md."""

from sac_rag.training.config import TrainConfig
from sac_rag.training.run import build_task, train
from sac_rag.training.trainer import Trainer, TrainResult

__all__ = ["TrainConfig", "TrainResult", "Trainer", "build_task", "train"]
