"""Configs: schema.py (the structured schemas Hydra composes into), validate.py (the checks a
schema cannot express), overrides.py (command-line overrides, checked before Hydra runs)."""
