"""The `folio` commands that are not dvc.yaml stages: generate and attention (generate.py),
import-gpt2 and export-hf (hf.py), runs (runs.py), summary (summary.py: also the register stage's
last lines), plots-template (plots_template.py), gc (gc.py);
dvc_outputs.py says which dvc.yaml stage declares a path as its output. `folio promote` is the
registry's (pipeline/tracking/registry.py)."""
