"""folio: a small GPT library — model, tokenizer, token files, training, checkpoints, generation.

It knows nothing of DVC, MLflow or params.yaml: everything takes plain arguments or config objects.
"""

__version__ = "0.1.0"
