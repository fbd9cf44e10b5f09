"""Positional schemes: every scheme in SCHEMES is causal with every attention sharing and norm
placement; RoPE is relative and ALiBi's slopes are the paper's; and a new scheme is one class
and one table entry, with nothing else to change."""

import itertools
import json

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from support import model_spec, tiny_spec
from workbench.accounting import count_params
from workbench.cli import app
from workbench.model import build_model
from workbench.model.positional import SCHEMES, NoPosition, alibi_slopes
from workbench.plumbing.errors import SpecError
from workbench.specfile import load_spec
from workbench.train.loop import train


def assert_causal(model: nn.Module, vocab: int = 257, T: int = 24) -> None:
    """Changing tokens from any position on never changes the logits before it, and does
    change those after."""
    model.eval()
    x = torch.randint(0, vocab, (3, T))
    for cut in (1, T // 2, T - 1):
        y = x.clone()
        y[:, cut:] = torch.randint(0, vocab, y[:, cut:].shape)
        a, b = model(x), model(y)
        torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=1e-5)
        assert not torch.allclose(a[:, cut:], b[:, cut:])


@pytest.mark.parametrize("kind,kv_heads,placement", list(itertools.product(SCHEMES, [4, 2, 1], ["pre", "post"])))
def test_changing_future_tokens_never_changes_earlier_logits(kind, kv_heads, placement):
    torch.manual_seed(0)
    assert_causal(build_model(model_spec(positional={"kind": kind}, kv_heads=kv_heads, norm_placement=placement)))


def test_rope_scores_depend_only_on_relative_position():
    model = build_model(model_spec(positional={"kind": "rope"}))
    q = torch.randn(1, 1, 1, 16).expand(1, 1, 24, 16)
    k = torch.randn(1, 1, 1, 16).expand(1, 1, 24, 16)
    rq, rk = model.pos.rotate(q, k)
    scores = rq[0, 0] @ rk[0, 0].T                     # (T, T): depends on i - j only
    torch.testing.assert_close(torch.diagonal(scores, -3), torch.full((21,), scores[3, 0].item()),
                               rtol=1e-4, atol=1e-4)


def test_alibi_slopes_follow_the_paper():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -(i + 1) for i in range(8)])
    assert len(alibi_slopes(6)) == 6 and alibi_slopes(6)[0] == pytest.approx(2 ** -2)


@pytest.mark.parametrize("kind", SCHEMES)
def test_every_scheme_counts_its_trained_positions(kind):
    m = model_spec(positional={"kind": kind, "max_positions": 40}).model
    scheme = SCHEMES[kind](m)
    assert SCHEMES[kind].table_params(m) == sum(p.numel() for p in scheme.parameters())
    assert SCHEMES[kind].problems(m) == []


# ------------------------------------------------------------------ a new scheme, added here


class GroupScaled(NoPosition):
    """Learned positions whose channels come in groups of 16, each group with a trained gain."""

    GROUP = 16

    def __init__(self, m):
        super().__init__(m)
        self.table = nn.Parameter(torch.zeros(m.context, m.width))
        self.gain = nn.Parameter(torch.ones(m.width // self.GROUP))

    @staticmethod
    def table_params(m) -> int:
        return m.context * m.width + m.width // GroupScaled.GROUP

    @staticmethod
    def problems(m) -> list[tuple[tuple[str, ...], str]]:
        if m.width % GroupScaled.GROUP:
            return [(("model", "width"), f"group-scaled positions need a width divisible by 16, got {m.width}")]
        return []

    def add(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        return x + self.table[:T] * self.gain.repeat_interleave(self.GROUP)


@pytest.fixture
def scaled(monkeypatch) -> str:
    """GroupScaled in SCHEMES as "scaled": the one entry adding a scheme takes."""
    monkeypatch.setitem(SCHEMES, "scaled", GroupScaled)
    return "scaled"


def test_a_new_scheme_validates_and_its_shape_rule_names_the_line(scaled, tmp_path):
    spec = {"name": "s", "model": {"depth": 1, "width": 48, "heads": 2, "context": 16,
                                   "positional": {"kind": scaled}},
            "train": {"budget": {"steps": 1}, "batch_tokens": 32}}
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert load_spec(tmp_path / "ok.yaml").model.positional.kind == scaled
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec, sort_keys=False).replace("width: 48", "width: 40"))
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "bad.yaml")
    [issue] = info.value.issues
    assert (issue.line, issue.field) == (4, "model.width")
    assert issue.message == "group-scaled positions need a width divisible by 16, got 40"


def test_a_new_scheme_is_listed_by_workbench_schema(scaled):
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    kind = json.loads(result.stdout)["$defs"]["PositionalSpec"]["properties"]["kind"]
    assert kind["enum"] == list(SCHEMES) and kind["enum"][-1] == scaled


@pytest.mark.parametrize("tie", [True, False])
def test_a_new_scheme_counts_exactly_and_is_causal(scaled, tie):
    spec = model_spec(positional={"kind": scaled}, tie_embeddings=tie)
    torch.manual_seed(0)
    model = build_model(spec)
    assert isinstance(model.pos, GroupScaled)
    assert sum(p.numel() for p in model.parameters()) == count_params(spec).total
    without = model_spec(positional={"kind": "none"}, tie_embeddings=tie)
    assert count_params(spec).embedding - count_params(without).embedding == 24 * 64 + 64 // 16
    assert_causal(model)


def test_a_new_scheme_trains(scaled):
    spec = tiny_spec(**{"model.positional.kind": scaled, "train.budget": {"steps": 2}, "train.completions": 0})
    record = train(spec)
    assert record.status == "completed" and record.steps == 2 and record.val_bpb > 0
    assert record.params["total"] == sum(p.numel() for p in build_model(spec).parameters())
