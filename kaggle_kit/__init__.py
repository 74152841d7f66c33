"""kaggle-kit: from fine-tuning to an offline Kaggle submission.

The embeddable runtime (data formats, prompting and truncation, batching, inference,
submission writing) lives in :mod:`kaggle_kit.runtime`; everything above it (config, training,
rendering, wheels, publishing, the `kit` CLI) runs on the user's machine only.
"""
__version__ = "0.1.0"
