"""bench/rounds.py's trivial job as a Flower app."""
