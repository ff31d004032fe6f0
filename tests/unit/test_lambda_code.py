"""The Lambda package's code (app.py and chalicelib/, what chalice packages) needs nothing of the local stack.

duckdb and sqlglot are development packages, absent from requirements.txt, and
local/ is not in the package: no module of the package may import them, at its
top or inside a function. The local audit engine reaches the route the other way:
local/ installs it (local/audit_engine.py), and the route asks jobs.engine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from chalicelib.audit import jobs, settings
from local import audit_engine

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = [ROOT / "app.py", *sorted((ROOT / "chalicelib").rglob("*.py"))]
NOT_IN_THE_LAMBDA = ("duckdb", "sqlglot", "local")


def imported_names(module: Path) -> list[tuple[int, str]]:
    """What `module` imports: import statements anywhere, and import_module / __import__ of a literal."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"), str(module))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import duckdb\nfrom local import stack\n\ndef f():\n    import sqlglot\n"
        "    importlib.import_module('local.audit_engine')\n    __import__('duckdb')\n",
        encoding="utf-8",
    )

    assert [name for _, name in imported_names(module)] == [
        "duckdb",
        "local",
        "sqlglot",
        "local.audit_engine",
        "duckdb",
    ]


@pytest.mark.parametrize("module", PACKAGED, ids=[str(m.relative_to(ROOT)) for m in PACKAGED])
def test_no_packaged_module_imports_duckdb_sqlglot_or_local(module: Path) -> None:
    offending = [
        f"{module.relative_to(ROOT)}:{line} imports {name}"
        for line, name in imported_names(module)
        if name.split(".")[0] in NOT_IN_THE_LAMBDA
    ]

    assert offending == []


def test_the_local_engines_live_in_local_not_in_chalicelib() -> None:
    assert not (ROOT / "chalicelib" / "audit" / "duckdb_engine.py").exists()
    assert not hasattr(jobs, "LocalEngine")
    assert (ROOT / "local" / "audit_engine.py").exists()
    assert (ROOT / "local" / "audit_duckdb.py").exists()


def local_settings() -> settings.ExportSettings:
    return settings.ExportSettings(
        engine=jobs.LOCAL_ENGINE,
        database="",
        workgroup="",
        results_bucket="results",
        results_prefix="audit/",
        log_bucket="log",
        local_log="/nowhere/access.json",
        local_work_dir="/nowhere/work",
        url_ttl_seconds=900,
        wait_seconds=0,
    )


def test_without_the_local_engine_installed_duckdb_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_local_engines", {})  # as in the Lambda: nothing of local/ was loaded

    with pytest.raises(settings.AuditConfigError) as wrong:
        jobs.engine(local_settings())

    assert wrong.value.problems == ["the duckdb audit engine is the local stack's, not installed here"]


def test_the_installed_local_engine_serves_duckdb_and_athena_stays_athenas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_local_engines", {})
    audit_engine.install()
    athena = settings.ExportSettings(**{**vars(local_settings()), "engine": "athena", "workgroup": "wg"})

    local = jobs.engine(local_settings())

    assert isinstance(local, audit_engine.LocalEngine)
    assert (local.log_glob, local.work_dir) == ("/nowhere/access.json", Path("/nowhere/work"))
    assert isinstance(jobs.engine(athena), jobs.AthenaEngine)
