"""The ways a library can be searched: by meaning, by words, or both fused."""

from typing import Literal, get_args

SearchMode = Literal["hybrid", "vector", "keyword"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
DEFAULT_SEARCH_MODE: SearchMode = "hybrid"
