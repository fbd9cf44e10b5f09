"""The evaluation suite: BLEU by hand, completion tasks cut from lines, batched greedy decoding
against scripted and trained models, and what int8 weights cost a trained model."""

import math
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from workbench.evaluate.suite import (bleu, completion_tasks, exact_match, greedy_complete, int8_error, quantize_int8,
                                       words)
from workbench.data.corpus import load_corpus
from workbench.evaluate.generate import generate, load_run
from workbench.data.synthetic import SyntheticData
from workbench.spec import Spec, TokenizerSpec
from workbench.data.tokenizer import TextTokenizer, get_tokenizer
from workbench.data.prepared import prepare
from workbench.evaluate.heldout import heldout_metrics
from workbench.train.loop import train


def small_spec() -> Spec:
    return Spec.model_validate({
        "name": "eval", "model": {"depth": 2, "width": 64, "heads": 4, "context": 64},
        "data": {"source": "python-stdlib", "max_bytes": 200_000},
        "train": {"budget": {"steps": 120}, "batch_tokens": 1024, "eval_bytes": 4096}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny byte-level model trained for a few seconds (about 4 bits per byte, down from 8):
    its weights are learned, not the initialisation, and it writes a newline now and then."""
    spec = small_spec()
    run = tmp_path_factory.mktemp("run")
    train(spec, run)
    model, tok = load_run(run)
    return spec, model, tok


def byte_tokenizer() -> TextTokenizer:
    corpus = load_corpus(SyntheticData(source="synthetic", documents=2, doc_bytes=8))
    return get_tokenizer(TokenizerSpec(kind="byte"), corpus)


# ------------------------------------------------------------------------------------ BLEU


def test_bleu_matches_a_hand_computed_example():
    candidates = ["the cat sat on the mat", "def f(x):"]
    references = ["the cat is on the mat", "def f(x, y):"]
    # words: "def f(x):" -> def f ( x ) :  (6);  "def f(x, y):" -> def f ( x , y ) :  (8)
    # c = 6 + 6 = 12, r = 6 + 8 = 14, BP = exp(1 - 14/12) = exp(-1/6)
    # p1: pair 1 matches the×2 cat on mat (sat no) = 5/6; pair 2 all 6/6        -> 11/12
    # p2: "the cat" "on the" "the mat" = 3/5; "def f" "f (" "( x" ") :" = 4/5     -> 7/10
    # p3: "on the mat" = 1/4; "def f (" "f ( x" = 2/4                            -> 3/8
    # p4: none of 3; "def f ( x" = 1/3                                           -> 1/6
    expected = math.exp(-1 / 6) * (11 / 12 * 7 / 10 * 3 / 8 * 1 / 6) ** (1 / 4)
    assert expected == pytest.approx(0.378804, abs=1e-6)
    assert bleu(candidates, references) == pytest.approx(expected, rel=1e-12)


def test_bleu_limits_and_brevity_penalty():
    text = ["for i in range(10):", "return x + y"]
    assert bleu(text, text) == pytest.approx(1.0)
    assert bleu(["alpha beta gamma delta"], ["one two three four"]) == 0.0
    assert bleu([""], ["a b c d"]) == 0.0
    assert bleu([], []) == 0.0
    # All n-grams of the short candidate match: only the brevity penalty remains, exp(1 - 6/3).
    assert bleu(["the cat sat"], ["the cat sat on the mat"], max_n=2) == pytest.approx(math.exp(-1))
    # A longer candidate is not rewarded by the penalty: precisions alone (6/7 and 5/6).
    assert bleu(["the cat sat on the mat today"], ["the cat sat on the mat"], max_n=2) == \
        pytest.approx(math.sqrt(6 / 7 * 5 / 6))
    # Clipping: a repeated word counts only as often as the reference has it.
    assert bleu(["the the the the"], ["the cat"], max_n=1) == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        bleu(["a"], [])


def test_words_split_code_and_prose():
    assert words("x = f(a, b)  # ok!") == ["x", "=", "f", "(", "a", ",", "b", ")", "#", "ok", "!"]


def test_exact_match_ignores_surrounding_whitespace():
    assert exact_match(["x + 1 ", "y", "z"], ["x + 1", " y\t", "w"]) == pytest.approx(2 / 3)
    assert exact_match([], []) == 0.0


# -------------------------------------------------------------------------------- tasks


DOCS = [
    f"# document {d}\n\nclass Thing{d}:\n" + "".join(
        f"    def method_{d}_{i}(self, value):\n        return value * {i} + {d}\n"
        for i in range(6)) + "    # a comment line that is long enough\n"
    for d in range(5)
] + ["short\n\n", "x" * 400 + "\n"]


def test_completion_tasks_cut_qualifying_lines_in_half():
    tasks = completion_tasks(DOCS, 12, seed=1, context_bytes=40)
    assert len(tasks) == 12
    for prompt, reference in tasks:
        whole = prompt + reference
        doc = next(d for d in DOCS if whole in d)
        assert doc[doc.index(whole) + len(whole):][:1] in ("\n", "")  # ends at a line end
        line = whole.rsplit("\n", 1)[-1]
        assert line in doc.split("\n")
        assert 16 <= len(line.strip()) <= 160 and not line.strip().startswith("#")
        indent = len(line) - len(line.lstrip())
        first = line[:indent + len(line.strip()) // 2]
        assert prompt.endswith(first) and reference == line[len(first):]
        assert len(prompt[:-len(first)].encode()) <= 40
        assert "\n" not in reference
    docs_used = {next(i for i, d in enumerate(DOCS) if p + r in d) for p, r in tasks}
    assert docs_used == set(range(5))


def test_completion_tasks_are_deterministic_and_nested():
    assert completion_tasks(DOCS, 7, seed=3) == completion_tasks(DOCS, 7, seed=3)
    assert completion_tasks(DOCS, 7, seed=3) != completion_tasks(DOCS, 7, seed=4)
    assert set(completion_tasks(DOCS, 4, seed=3)) <= set(completion_tasks(DOCS, 9, seed=3))
    assert len(completion_tasks(DOCS, 1000)) == 5 * 12
    assert completion_tasks(["", "short\n# only a comment that is long enough\n"], 5) == []
    prompt, _ = completion_tasks(["é" * 300 + "\n    value = compute(alpha, beta)\n"], 1,
                                 context_bytes=12)[0]
    assert prompt == "é" * 5 + "\n    value = comput"  # 12 bytes back is inside an "é": dropped


# ----------------------------------------------------------------------------- decoding


class Scripted(torch.nn.Module):
    """A stand-in for GPT whose next token is a fixed function of the last one (by default the
    same token again); it records the width of every window it is fed."""

    def __init__(self, tok: TextTokenizer, successor: dict[str, str | int], context: int = 16):
        super().__init__()
        self.spec = SimpleNamespace(context=context)
        self.vocab_size = tok.vocab_size
        self.unused = torch.nn.Parameter(torch.zeros(1))
        table = torch.arange(tok.vocab_size)
        for a, b in successor.items():
            table[tok.encode(a)[0]] = b if isinstance(b, int) else tok.encode(b)[0]
        self.register_buffer("table", table)
        self.widths: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.widths.append(x.shape[1])
        logits = torch.zeros(*x.shape, self.vocab_size + 3)
        logits[..., self.vocab_size:] = 9.0                  # padding rows: never a real token
        return logits.scatter(-1, self.table[x][..., None], 1.0)


def test_greedy_complete_stops_at_a_newline_or_end_of_text():
    tok = byte_tokenizer()
    model = Scripted(tok, {"a": "b", "b": "c", "c": "\n", "\n": "z", "x": "y", "y": tok.eos_id})
    prompts = ["well a", "x", "q", "?a"]
    for batch in (1, 2, 32):
        got = greedy_complete(model, tok, prompts, max_new_tokens=5, batch=batch)
        assert got == ["bc", "y", "qqqqq", "bc"]
    model.widths.clear()
    assert greedy_complete(model, tok, ["x", "well a"], max_new_tokens=5) == ["y", "bc"]
    # One batch cropped to the shortest row, [eos, "x"]: every row has ended after three steps.
    assert model.widths == [2, 3, 4]
    assert greedy_complete(model, tok, []) == []


def test_greedy_complete_feeds_at_most_the_context():
    tok = byte_tokenizer()
    model = Scripted(tok, {}, context=16)
    assert greedy_complete(model, tok, ["p" * 100, "r" * 60], max_new_tokens=40) == ["p" * 40, "r" * 40]
    # Both rows start from their last 15 tokens (context - 1), then the window slides at 16.
    assert model.widths == [15] + [16] * 39
    model.widths.clear()
    greedy_complete(model, tok, ["p" * 5], max_new_tokens=14, batch=1)
    assert model.widths == list(range(6, 16)) + [16] * 4      # [eos] + 5 tokens, one more each step


def test_greedy_complete_matches_one_prompt_at_a_time(trained):
    _, model, tok = trained
    model.train()
    starts = ["def __init__(self", "    return self", "import os\nimport", "class Foo(object",
              "        if not ", "for i in range(", 'raise ValueError("']
    equal = [p.rjust(18) for p in starts]
    got = greedy_complete(model, tok, equal, max_new_tokens=24, batch=3)
    assert model.training  # mode restored
    assert all("\n" not in g and "<|endoftext|>" not in g for g in got) and any(got)

    def slow(prompt: str) -> str:
        return generate(model.eval(), tok, prompt, tokens=24, temperature=0).split("\n")[0]

    # Equal lengths within context - max_new_tokens: no row is cropped, so every batch agrees
    # with greedy sampling one prompt at a time, up to the first newline.
    assert got == [slow(p) for p in equal]
    assert greedy_complete(model, tok, starts, max_new_tokens=24, batch=1) == [slow(p) for p in starts]
    # Mixed lengths in one batch: the shortest prompt is never cropped.
    mixed = greedy_complete(model, tok, starts, max_new_tokens=24, batch=len(starts))
    shortest = min(range(len(starts)), key=lambda i: len(starts[i]))
    assert mixed[shortest] == slow(starts[shortest])


# ------------------------------------------------------------------------------------ int8


def bits_per_byte(model: torch.nn.Module, spec: Spec) -> float:
    """Held-out bits per byte through data.prepared and evaluate.heldout."""
    return heldout_metrics(model, prepare(spec).pretrain, torch.device("cpu"), nullcontext, 16).bpb


def test_int8_weights_cost_a_trained_model_little(trained):
    spec, model, _ = trained
    q = quantize_int8(model)
    full = bits_per_byte(model, spec)
    assert full < 5.0                                    # trained: uniform bytes are 8
    assert bits_per_byte(q, spec) == pytest.approx(full, rel=0.02)
    assert 0 < int8_error(model) < 0.02
    assert int8_error(q) == pytest.approx(0.0, abs=1e-6)  # int8 values are their own round trip
    for (name, p), (_, w) in zip(model.named_parameters(), q.named_parameters()):
        if p.dim() >= 2:
            assert max(len(row.unique()) for row in w.reshape(len(w), -1)) <= 255, name
            assert not torch.equal(p, w), name
        else:
            assert torch.equal(p, w), name
    assert q.head.weight is q.embed.weight                # tied once, still tied
    assert model.embed.weight is not q.embed.weight
