"""Judging a model: held-out metrics (bits per byte, perplexity, top-1), the evaluation suite
(completions, BLEU, int8 weights) and generated text for people to read."""
