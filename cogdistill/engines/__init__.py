"""Engines: rendered prompts in, Generations out (base.py: the protocol; one module per engine).

Engines are named in cogdistill.registry and imported only when a job uses one.
"""
