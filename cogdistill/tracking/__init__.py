"""MLflow: the store and job runs (store.py), who owns a running run (leases.py), the versioned
run format (run_format.py), the sweep table (sweep_table.py) and a job's scatter figure (job_figure.py)."""
