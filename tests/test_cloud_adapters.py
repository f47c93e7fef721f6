"""Snowflake and BigQuery: every model compiles with their adapters, without a connection.

Their macros (macros/adapters/) are written from the vendors' documentation and cannot be run here; compiling
proves they render and that no model misses a dispatch. Runs only in its own venv, `make test-cloud`
(requirements-cloud.lock says why): the main suite deselects the `cloud` marker.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipelines.settings import PROJECT_DIR, Paths
from pipelines.transform import dbt_command
from tests.conftest import target_env

pytestmark = pytest.mark.cloud


def _dummy_service_account(path: Path) -> Path:
    """dbt-bigquery reads its keyfile even to compile: a well-formed one that authenticates nowhere."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "compile-only",
                "private_key_id": "0",
                "private_key": key.decode(),
                "client_email": "compile-only@compile-only.iam.gserviceaccount.com",
                "client_id": "0",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


@pytest.mark.parametrize("adapter", ["snowflake", "bigquery"])
def test_other_adapters_compile(adapter, tmp_path):
    """Every model renders with the snowflake__ and bigquery__ macros, without a connection."""
    data = tmp_path / "data"
    work = data / "dbt"
    work.mkdir(parents=True)
    env = target_env(data, adapter) | {
        "SNOWFLAKE_ACCOUNT": "compile-only",
        "SNOWFLAKE_USER": "compile-only",
        "BIGQUERY_PROJECT": "compile-only",
        "BIGQUERY_KEYFILE": str(_dummy_service_account(tmp_path / "keyfile.json")),
    }
    # Models only: unit tests need a connection. So does is_incremental() (it asks the warehouse whether the
    # table exists), hence the incremental models compiled as tables: every model, only not their
    # incremental branch.
    args = ["compile", "--target", adapter, "--no-introspect", "--no-populate-cache"]
    args += ["--select", "resource_type:model", "--vars", "{segment_accounts__incremental: false}"]
    result = subprocess.run(
        dbt_command(Paths(data), args), cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    compiled_models = work / "target" / "compiled" / "segment_accounts" / "models"
    # (data tests defined in a YAML file compile into a folder named after it)
    compiled = {p.stem: p.read_text() for p in compiled_models.rglob("*.sql") if p.parent.suffix != ".yml"}
    models = {p.stem for p in (PROJECT_DIR / "models").rglob("*.sql")}
    assert set(compiled) == models
    # the adapter's own dialect, not DuckDB's: its JSON functions in the staging model
    assert {"snowflake": "parse_json(", "bigquery": "wide_number_mode"}[adapter] in compiled[
        "stg_segment__events"
    ].lower()
