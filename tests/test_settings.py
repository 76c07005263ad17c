from pathlib import Path

from gristmill.settings import Settings, settings_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_configuration_table_is_generated_from_settings() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("\n<!-- settings-table:end -->")
    assert text[start:end] == settings_table(), "regenerate it with: python -m gristmill.settings"


def test_every_setting_reads_its_prefixed_environment_variable(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GRISTMILL_HOME", str(tmp_path))
    monkeypatch.setenv("GRISTMILL_MAX_INLINE_BYTES", "123")
    monkeypatch.setenv("GRISTMILL_EMBEDDINGS_URL", "http://embed.example:9/v1")
    settings = Settings()
    assert settings.home == tmp_path
    assert settings.max_inline_bytes == 123
    assert settings.embeddings_url == "http://embed.example:9/v1"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/gristmill.db"
    assert settings.resolved_lancedb_uri == str((tmp_path / "lancedb").resolve())
