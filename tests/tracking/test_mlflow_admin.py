"""``python -m autolfads.tracking.mlflow_admin``: its errors before any server is reached.

What it does to a real authenticated server is in ``test_mlflow_auth.py`` (slow).
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from autolfads.tracking import mlflow_admin


def test_an_unreadable_labs_file_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        mlflow_admin.main,
        ["provision", str(tmp_path / "missing.yaml")],
        env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"Error: {tmp_path / 'missing.yaml'}: cannot read the labs file (No such file or directory)"
    )


def test_an_unreachable_server_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("a-good-long-password")
    labs = tmp_path / "labs.yaml"
    labs.write_text(f"- {{lab: a, experiment: e, username: u, passwordFile: {tmp_path / 'pw'}}}\n")
    result = CliRunner().invoke(
        mlflow_admin.main,
        ["provision", str(labs)],
        env={
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": "the-admin-password",
        },
    )
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert line == (
        "Error: cannot reach MLflow at http://127.0.0.1:9 (connection refused) to read the current user: "
        "is the server up, and MLFLOW_TRACKING_URI right?"
    )
    assert "the-admin-password" not in result.output + result.stderr
