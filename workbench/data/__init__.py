"""Corpora and tokenizers: a spec's `data` and `tokenizer` sections to documents, token streams
and the tensors a run trains and evaluates on."""
