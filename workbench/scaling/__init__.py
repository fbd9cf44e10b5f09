"""Scaling-law fits: a table of runs in, a fit result out. The numeric core (powerlaw.py,
lbfgs.py, isoflop.py) works on arrays; runs.py reads tables; fit.py keeps the books and
explains; display.py prints a result."""
