"""folio's application layer: one module per dvc.yaml stage, the params schema, MLflow glue, CLI."""
