"""Statistics over traces and human data: alignment (correlation.py) and reliability / noise
ceilings (reliability.py). Pure functions over frames and arrays."""
