"""The HTML report of a study: figures.py draws, page.py writes the page."""
