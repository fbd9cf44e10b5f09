"""The README's examples are real: its spec, fine-tuned spec and study are valid files."""

import re
import shutil

from support import ROOT
from workbench.specfile import load_spec
from workbench.study.file import load_study


def test_readme_examples_validate(tmp_path):
    """The spec and study shown in the README are real, valid files."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) == 3
    shutil.copytree(ROOT / "specs", tmp_path / "specs")
    (tmp_path / "studies").mkdir()
    (tmp_path / "specs" / "readme.yaml").write_text(blocks[0])
    (tmp_path / "specs" / "readme-tuned.yaml").write_text(blocks[1])
    (tmp_path / "studies" / "readme.yaml").write_text(blocks[2])
    assert load_spec(tmp_path / "specs" / "readme.yaml").name == "gpt-tiny"
    tuned = load_spec(tmp_path / "specs" / "readme-tuned.yaml")
    assert tuned.finetune.data.prompt == "instruction" and tuned.finetune.recipe(tuned.train).lr == 1e-3
    assert load_study(tmp_path / "studies" / "readme.yaml").name == "positional"
