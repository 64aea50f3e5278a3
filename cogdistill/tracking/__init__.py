"""MLflow: the store and job runs (store.py), the versioned run format (run_format.py), the sweep
table (sweep_table.py) and a job's scatter figure (job_figure.py)."""
