import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """One tokenizer/token cache for the whole session, never the user's own."""
    os.environ["WORKBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
