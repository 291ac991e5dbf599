"""Benchmarks behind `pvad bench ...`: they print figures and ratios; tests do not time anything."""
