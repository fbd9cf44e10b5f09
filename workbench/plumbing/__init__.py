"""Plumbing every stage shares: user-facing errors, atomic writes, process lifetime, dotted
paths, and the base of every schema section."""
