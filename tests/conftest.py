import os
import uuid

import pytest

@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """One tokenizer/token cache for the whole session, never the user's own."""
    os.environ["WORKBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test, dropped after. Never skipped under CI."""
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
