"""workbench: declarative architecture search and scaling laws for language models."""
