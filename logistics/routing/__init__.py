"""The vehicle-routing adapter: problem dataclasses in, a plan out (see problem.py)."""
