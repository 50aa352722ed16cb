"""MLflow glue, one job a module:

- store.py: where runs go (the tracking store, its health, the `folio` experiment, writing to a run);
- access.py: a server's 401/403 as one line naming the user and the grant to ask for;
- lineage.py: what a run came from (git commit, DVC experiment, the corpus dataset) and its name;
- training_run.py: the MLflow run of one training; spool.py: metrics that outlive an outage;
- registry.py: the model registry (with pyfunc_model.py, the served model, and model_card.py).
"""
