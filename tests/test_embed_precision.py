"""The precision the embeddings server runs the model in: how it is chosen, and that bfloat16 keeps float32's answers."""

import numpy as np
import pytest

from gristmill.embeddings.precision import choose_precision, cpu_flags

# Shaped like the real files: the first processor's block of /proc/cpuinfo, shortened.
EPYC_GENOA = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu vme de pse tsc msr pae avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni gfni vaes
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2
"""
XEON_SKYLAKE = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae avx2 avx512f avx512dq avx512cd avx512bw avx512vl
"""
XEON_SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8
"""
GRAVITON3 = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid sve i8mm bf16 rng
CPU implementer\t: 0x41
"""
GRAVITON2 = """processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
"""


@pytest.mark.parametrize(
    ("cpuinfo", "precision", "reason"),
    [
        (EPYC_GENOA, "bfloat16", "the CPU has avx512_bf16"),
        (XEON_SAPPHIRE_RAPIDS, "bfloat16", "the CPU has amx_bf16"),
        (GRAVITON3, "bfloat16", "the CPU has bf16"),
        (XEON_SKYLAKE, "float32", "the CPU has no bfloat16 instructions"),
        (GRAVITON2, "float32", "the CPU has no bfloat16 instructions"),
        ("", "float32", "the CPU has no bfloat16 instructions"),  # no /proc/cpuinfo (not Linux)
    ],
)
def test_auto_runs_bfloat16_only_where_the_cpu_has_it(cpuinfo, precision, reason):
    choice = choose_precision("auto", cpuinfo, onednn=True)
    assert (choice.precision, choice.reason) == (precision, reason)


def test_auto_keeps_float32_without_onednn():
    choice = choose_precision("auto", EPYC_GENOA, onednn=False)
    assert (choice.precision, choice.reason) == ("float32", "this torch build has no oneDNN to run bfloat16 with")


@pytest.mark.parametrize("setting", ["bfloat16", "float32"])
def test_the_setting_overrides_the_cpu(setting):
    for cpuinfo in (EPYC_GENOA, XEON_SKYLAKE):
        choice = choose_precision(setting, cpuinfo, onednn=True)
        assert (choice.precision, choice.reason) == (setting, "set by GRISTMILL_EMBEDDINGS_PRECISION")


def test_flags_are_read_from_the_first_processor_only():
    two = EPYC_GENOA + "\nprocessor\t: 1\nflags\t\t: fpu amx_bf16\n"
    assert "amx_bf16" not in cpu_flags(two) and "avx512_bf16" in cpu_flags(two)


# --- bfloat16 against float32 sentence-transformers, the real model ---------------------------------

LONG_PROSE = (
    "Gristmill keeps every chunk with the source it came from, its heading path and its page range, so "
    "that an answer can cite where it was found. When a document changes, only the chunks around the edit "
    "are embedded again: chunk boundaries are chosen by the content, not by position, so an inserted "
    "paragraph moves the boundaries next to it and leaves the rest of the document alone. "
) * 4  # past the model's 256-token window: both sides read the same first 256 tokens

VARIED_TEXTS = [
    # prose
    "To rotate an API key, create a new key with the same scopes, deploy it, then revoke the old one.",
    "The quarterly report shows revenue up 12% year over year, driven mostly by the enterprise tier, "
    "while churn in the self-serve plans rose slightly after the price change in March.",
    LONG_PROSE,
    # code
    "def chunk_ids(source_id: str, texts: list[str]) -> list[str]:\n"
    "    return [f\"{source_id}:{i}:{text_hash(t)[:12]}\" for i, t in enumerate(texts)]",
    "SELECT l.name, count(*) AS chunks FROM libraries l JOIN sources s ON s.library_id = l.id "
    "WHERE s.status = 'completed' GROUP BY l.name ORDER BY chunks DESC;",
    '{"id": "src_01HZX", "status": "partial", "warnings": ["page 3 has no text layer"], "chunk_count": 41}',
    # tables
    "| region | Q1 | Q2 | Q3 |\n| --- | --- | --- | --- |\n| EMEA | 1.2 | 1.4 | 1.9 |\n| APAC | 0.8 | 0.9 | 1.1 |",
    "order_id,customer,amount,currency\n10231,ACME GmbH,1299.00,EUR\n10232,Globex,89.50,USD",
    # other languages
    "Die Rechnung ist innerhalb von 30 Tagen nach Erhalt ohne Abzug zu begleichen.",
    "Le service réessaie automatiquement les téléchargements qui échouent à cause d'un délai dépassé.",
    "検索結果には、出典となる文書のタイトルとページ番号が表示されます。",
    "Пароль должен содержать не менее двенадцати символов.",
    "يمكنك حذف المكتبة وجميع مصادرها من صفحة الإعدادات.",
    "向量索引在库中的文本块超过三万个时自动建立。",
    # very short
    "ok",
    "?",
    "2026",
    "API",
    "🙂 thanks!",
    # 254 tokens with [CLS] and [SEP], just inside the model's window
    " ".join(f"item {i} costs {i * 7 % 100} dollars," for i in range(42)),
    "https://example.com/docs/v1/libraries/{library_id}/search?mode=hybrid&limit=10#filters",
]


@pytest.fixture(scope="module")
def float32_vectors() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    from gristmill.embedding_models import packaged_model_dir

    model = SentenceTransformer(str(packaged_model_dir()), device="cpu")
    return model.encode(VARIED_TEXTS, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_the_encoder_keeps_float32_sentence_transformers_answers(precision, float32_vectors):
    from gristmill.embedding_models import packaged_model_dir
    from gristmill.embeddings.server import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(packaged_model_dir(), "all-MiniLM-L6-v2", precision)
    vectors = encoder.embed(VARIED_TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(VARIED_TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * float32_vectors, axis=1)
    assert cosines.min() >= 0.999, {VARIED_TEXTS[i][:40]: round(float(c), 5) for i, c in enumerate(cosines) if c < 0.999}
    # Neighbours stay neighbours: each text's nearest other text is the same in both.
    def nearest(matrix: np.ndarray) -> list[int]:
        similarity = matrix @ matrix.T
        np.fill_diagonal(similarity, -1)
        return similarity.argmax(axis=1).tolist()

    assert nearest(vectors) == nearest(float32_vectors)
