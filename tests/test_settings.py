import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from gristmill.errors import InvalidRequest, ServiceUnavailable
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


def test_the_known_embedding_models_are_the_packaged_one_and_the_configured_ones() -> None:
    models = json.dumps([{"name": "nomic-embed-text", "dimensions": 768, "url": "http://ollama:11434/v1", "window_tokens": 2048,
                          "api_key": "k"}])
    settings = Settings(embedding_models=models, embeddings_url="http://127.0.0.1:9/v1")
    known = settings.known_embedding_models
    assert sorted(known) == ["all-MiniLM-L6-v2", "nomic-embed-text"]
    assert (known["all-MiniLM-L6-v2"].dimensions, known["all-MiniLM-L6-v2"].url) == (384, "http://127.0.0.1:9/v1")
    nomic = settings.embedding_model_named("nomic-embed-text")
    assert (nomic.dimensions, nomic.window_tokens, nomic.max_chunk_tokens, nomic.api_key) == (768, 2048, 2046, "k")
    assert settings.embedding_model_named().name == "all-MiniLM-L6-v2"  # the default
    with pytest.raises(InvalidRequest) as unknown:
        settings.embedding_model_named("text-embedding-3-small")
    assert unknown.value.code == "unknown_embedding_model" and unknown.value.details["known"] == sorted(known)
    with pytest.raises(ServiceUnavailable) as lost:
        settings.library_model("text-embedding-3-small")
    assert lost.value.code == "embedding_model_unavailable"

    # A default no entry lists is the one model of the (older) single-model configuration.
    legacy = Settings(embedding_model="bge-small", embedding_dim=512, embeddings_url="http://tei:80/v1")
    assert (legacy.embedding_model_named().dimensions, legacy.embedding_model_named().url) == (512, "http://tei:80/v1")


def test_unusable_embedding_model_lists_are_refused_when_read() -> None:
    for value, says in (
        ("not json", "not valid JSON"),
        ('{"name": "x"}', "JSON list of objects"),
        ('[{"name": "x", "dimensions": 8}]', "lacks url"),
        ('[{"name": "x", "dimensions": 8, "url": "u", "size": 1}]', "unknown field(s) size"),
        ('[{"name": "x", "dimensions": 0, "url": "u"}]', "positive integer dimensions"),
        ('[{"name": "x", "dimensions": 8, "url": "u"}, {"name": "x", "dimensions": 8, "url": "u"}]', "names 'x' twice"),
    ):
        with pytest.raises(ValidationError, match=re.escape(says)):
            Settings(embedding_models=value)
