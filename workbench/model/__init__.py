"""The transformer: positional schemes, layers and the GPT they make, built from a spec's
model section."""

from workbench.model.gpt import GPT, build_model, lm_loss, padded_vocab

__all__ = ["GPT", "build_model", "lm_loss", "padded_vocab"]
