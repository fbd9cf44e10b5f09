"""Generate text from a trained run: people judge models by reading them."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_model

from workbench.data.tokenizer import TextTokenizer
from workbench.model.gpt import GPT, build_model
from workbench.plumbing.errors import RunFolderError
from workbench.record import SPEC_FILE, TOKENIZER_FILE, WEIGHTS_FILE, read_run_spec


def load_run(run_dir: Path) -> tuple[GPT, TextTokenizer]:
    """The trained model (eval mode, CPU) and tokenizer of a run folder; a missing or damaged
    file is one RunFolderError naming it."""
    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise RunFolderError(f"{run_dir}: no {WEIGHTS_FILE} (not a finished run folder?)")
    try:
        model = build_model(read_run_spec(run_dir))
    except Exception as e:
        raise RunFolderError(f"{run_dir}: {SPEC_FILE} is missing or not a valid spec "
                             f"({type(e).__name__}: {_first_line(e)})") from None
    try:
        load_model(model, str(weights))
    except Exception as e:
        raise RunFolderError(f"{run_dir}: {WEIGHTS_FILE} does not hold this spec's weights "
                             f"({type(e).__name__}: {_first_line(e)})") from None
    try:
        tok = TextTokenizer.load(run_dir / TOKENIZER_FILE)
    except Exception as e:
        raise RunFolderError(f"{run_dir}: {TOKENIZER_FILE} is missing or damaged "
                             f"({type(e).__name__}: {_first_line(e)})") from None
    return model.eval(), tok


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


@torch.no_grad()
def generate(model: GPT, tok: TextTokenizer, prompt: str, tokens: int = 200,
             temperature: float = 0.8, top_k: int | None = 50, seed: int = 0) -> str:
    """Continue `prompt` by sampling `tokens` tokens on the model's device (in eval mode, restored
    after); returns only the continuation. The sampling generator runs on the CPU, so a seed
    gives the same text on every device up to floating-point differences in the logits."""
    gen = torch.Generator().manual_seed(seed)
    ids = [tok.eos_id] + tok.encode(prompt)
    x = torch.tensor([ids], device=next(model.parameters()).device)
    T = model.spec.context
    was_training = model.training
    model.eval()
    for _ in range(tokens):
        logits = model(x[:, -T:])[0, -1, : model.vocab_size].float().cpu()
        if temperature <= 0:
            nxt = logits.argmax()
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, len(logits))).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[0]
        if nxt.item() == tok.eos_id:
            break
        x = torch.cat([x, nxt.view(1, 1).to(x.device)], dim=1)
    model.train(was_training)
    return tok.decode(x[0, len(ids):].tolist())
