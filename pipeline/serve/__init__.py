"""`folio serve`: an OpenAI-compatible completions server over a registered model or a checkpoint.

- app.py: the HTTP routes, the OpenAI request checks and error bodies (schemas.py);
- follower.py: the models held, and the thread that follows the served alias;
- models.py: loading a registered version or a checkpoint, with its batcher;
- static/: the playground page at `/` (plain HTML and one small script, no build step).

The batching loop over the KV-cache decoder is the library's (folio.batching); the command that
checks the settings and starts uvicorn is pipeline/commands/serve.py.
"""
