import os
import uuid
from contextlib import contextmanager

import pytest

from support import two_phase
from workbench.train.loop import train


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """One tokenizer/token cache for the whole session, never the user's own."""
    os.environ["WORKBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@contextmanager
def _database():
    """A fresh PostgreSQL database, dropped after. Never skipped under CI."""
    psycopg = pytest.importorskip("psycopg")
    name = f"wb_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no local PostgreSQL: {e}")
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test."""
    with _database() as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url():
    """A fresh PostgreSQL database shared by the tests of one module (one scenario, several checks)."""
    with _database() as url:
        yield url


@pytest.fixture(scope="session")
def two_phase_run(tmp_path_factory):
    """support.two_phase trained once into a run folder: (spec, record, run folder). Pretrained,
    fine-tuned and judged by the whole evaluation suite, so every objective has a value."""
    spec = two_phase()
    run = tmp_path_factory.mktemp("two-phase")
    return spec, train(spec, run), run
