"""The `folio` commands that are not dvc.yaml stages: generate and attention (generate.py),
import-gpt2 and export-hf (hf.py), runs (runs.py), plots-template (plots_template.py). `folio
promote` is the registry's (pipeline/tracking/registry.py)."""
