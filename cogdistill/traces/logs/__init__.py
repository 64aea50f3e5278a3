"""Harness logs (Inspect, lm-eval, lighteval, batch outputs, HELM) read as trace sources."""
