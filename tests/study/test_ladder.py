"""A scaling ladder: sizes x budgets x groups, each budget in whole batches."""

from support import write_study
from workbench.accounting import flops_per_token
from workbench.study.file import load_study
from workbench.study.ladder import ladder_points
from workbench.study.space import spec_for


def test_token_ladders_cross_groups_sizes_and_budgets_in_whole_batches(tmp_path):
    study = load_study(write_study(tmp_path, ladder={
        "tokens": [100, 1000], "sizes": [{"model.depth": 1}, {"model.depth": 2}],
        "groups": [{"model.positional.kind": "rope"}, {"model.positional.kind": "alibi"}]}))
    points = ladder_points(study)
    assert len(points) == 2 * 2 * 2
    assert points[0] == {"model.positional.kind": "rope", "model.depth": 1, "train.budget": {"tokens": 128}}
    assert [p["train.budget"]["tokens"] for p in points[:2]] == [128, 1024]      # at least one batch of 128
    assert {(p["model.positional.kind"], p["model.depth"]) for p in points} == \
        {(k, d) for k in ("rope", "alibi") for d in (1, 2)}


def test_flops_ladders_give_each_size_the_tokens_its_compute_buys(tmp_path):
    study = load_study(write_study(tmp_path, ladder={"flops": [1e8, 1e9],
                                                     "sizes": [{"model.depth": 1}, {"model.depth": 3}]}))
    for point in ladder_points(study):
        per_token = flops_per_token(spec_for(study, {"model.depth": point["model.depth"]}, 0))["6N+attn"]
        budget = point["train.budget"]["tokens"]
        assert budget % 128 == 0
        assert any(abs(budget - c / per_token) <= 64 for c in (1e8, 1e9))        # nearest whole batch
    small, large = ladder_points(study)[:2], ladder_points(study)[2:]
    assert [p["train.budget"]["tokens"] for p in large] < [p["train.budget"]["tokens"] for p in small]


def test_a_study_without_a_ladder_has_no_points(tmp_path):
    assert ladder_points(load_study(write_study(tmp_path))) == []
