"""Split a Document into chunks that fit the embedding model's window and stay put when the text is edited.

Structure first: a chunk never crosses a change of heading path, and never splits a block (paragraph,
list item, table, CSV row...) unless that block alone is over the limit. Each chunk carries a context
header (the document's title and its heading path, `context_header`) that is embedded and
keyword-indexed with it; the header's tokens come out of the chunk's budget, so what the model reads
still fits its window.

Within a run of blocks under one heading path, boundaries are content-defined rather than packed
greedily from the top. Greedy packing makes every boundary depend on everything before it: lengthen
paragraph 3 and every later chunk can shift by a block, so a cache keyed by chunk text re-embeds the
rest of the document. Here each gap between blocks has a strength, a hash of the opening of the block
after it, and neighbouring blocks are joined across their weakest gaps first for as long as the result
fits. Whether a gap stays a boundary depends only on the blocks up to the nearest stronger gaps on
either side, so an edit to one block moves, at most, the boundaries next to it. The price is fill:
chunks average about 70% of the budget where greedy packing reaches 80-90%.
"""

import bisect
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from tokenizers import Encoding, Tokenizer

from gristmill.documents import Chunk, Document, context_header
from gristmill.embedding_models import MODEL_WINDOW_TOKENS, SPECIAL_TOKENS, packaged_tokenizer_path
from gristmill.errors import InvalidRequest

MAX_CONTENT_TOKENS = MODEL_WINDOW_TOKENS - SPECIAL_TOKENS

ENCODE_BATCH = 1024  # texts tokenized at once: enough for the tokenizer's threads, little memory
# A header longer than this loses its leading parts (the title first): the chunk's own text matters more.
HEADER_MAX_TOKENS = 48
OPENING_CHARS = 32  # typical edits (a typo, an added sentence) leave a block's opening, so its gap's strength, alone

# Where an oversized block may be cut, tried in order: after a sentence, at a line break, between words.
# CJK full stops need no space after them.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+|[\u3002\uff01\uff1f]+[\u201d\u300d\u300f]?\s*")
_LINE_BREAK = re.compile(r"\n\s*")
_WORD_BREAK = re.compile(r"\s+")


@lru_cache(maxsize=8)
def _load_tokenizer(path: str) -> Tokenizer:
    tokenizer = Tokenizer.from_file(path)
    # The shipped tokenizer.json truncates to 128 and pads to 128; counting needs neither.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def load_tokenizer(path: Path | None = None) -> Tokenizer:
    """The embedding model's tokenizer (default: the packaged all-MiniLM-L6-v2's), loaded once per path."""
    return _load_tokenizer(str(path or packaged_tokenizer_path()))


def count_tokens(text: str, tokenizer: Tokenizer) -> int:
    """Tokens the model sees for `text`, not counting [CLS] and [SEP]."""
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


@dataclass
class _Block:
    text: str
    start: int  # offset in Document.text
    section: int  # index into Document.sections
    n_tokens: int
    encoding: Encoding | None  # kept only for a block over the budget, which must be split at its tokens

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class _Span:
    """A candidate chunk before it becomes a Chunk: where it is in Document.text and what it covers."""

    start: int
    end: int
    sections: list[int]
    heading_path: list[str]


def chunk_document(
    document: Document,
    *,
    max_tokens: int,
    overlap_tokens: int,
    tokenizer: Tokenizer,
    window_tokens: int = MODEL_WINDOW_TOKENS,
) -> list[Chunk]:
    """Chunks of at most min(max_tokens, window_tokens - 2) tokens (the embedding model's window, less
    [CLS] and [SEP]: 254 for the packaged model), in document order, with offsets into Document.text.

    `overlap_tokens` applies only between the pieces of a block that had to be split; chunks made
    of whole blocks do not overlap.
    """
    if max_tokens < 1:
        raise InvalidRequest(f"chunk_max_tokens must be at least 1, not {max_tokens}", code="invalid_chunk_size")
    if overlap_tokens < 0:
        raise InvalidRequest(f"chunk_overlap_tokens cannot be negative ({overlap_tokens})", code="invalid_chunk_size")
    budget = min(max_tokens, window_tokens - SPECIAL_TOKENS)
    # Each piece of a split block must move forward by at least half the budget.
    overlap = min(overlap_tokens, budget // 2)

    text = document.text
    spans: list[_Span] = []
    headers: list[str] = []
    for heading_path, blocks in _block_groups(document, tokenizer, budget):
        header, header_tokens = _header(document.title, heading_path, tokenizer)
        # The header's tokens come out of the text's budget (never below half of it).
        room = max(budget - header_tokens, _smallest_room(budget))
        counts = [b.n_tokens for b in blocks]
        for a, b in _pack(counts, [x.text for x in blocks], room):
            first, last = blocks[a], blocks[b - 1]
            if b - a == 1 and counts[a] > room:
                for start, end in _split_block(first, room, min(overlap, room // 2)):
                    spans.append(_Span(first.start + start, first.start + end, [first.section], heading_path))
                    headers.append(header)
            else:
                sections = sorted({x.section for x in blocks[a:b]})
                spans.append(_Span(first.start, last.end, sections, heading_path))
                headers.append(header)

    texts = [text[s.start : s.end] for s in spans]
    counts = [len(encoding.ids) for encoding in _encodings(tokenizer, texts)]
    return [
        _make_chunk(i, span, chunk_text, count, document, header)
        for i, (span, chunk_text, count, header) in enumerate(zip(spans, texts, counts, headers, strict=True))
    ]


def chunk_with_default_tokenizer(
    document: Document,
    max_tokens: int,
    overlap_tokens: int,
    tokenizer_path: Path | None = None,
    window_tokens: int = MODEL_WINDOW_TOKENS,
) -> list[Chunk]:
    """`chunk_document` with the tokenizer at `tokenizer_path` (default: the packaged model's)."""
    tokenizer = load_tokenizer(tokenizer_path)
    return chunk_document(
        document, max_tokens=max_tokens, overlap_tokens=overlap_tokens, tokenizer=tokenizer, window_tokens=window_tokens
    )


# Hashing a whole Document for a cache key that is never used costs more than chunking it again.
chunk_task = task(name="chunk", cache_policy=NO_CACHE)(chunk_with_default_tokenizer)


# --- structure --------------------------------------------------------------------------------


def _encodings(tokenizer: Tokenizer, texts: Sequence[str]) -> Iterator[Encoding]:
    """The texts' encodings, a batch at a time: an Encoding holds ~100 bytes per token (ids, offsets,
    token strings), so a 10 MB CSV's all at once took 0.9 GB (bench/bench_memory.py)."""
    for start in range(0, len(texts), ENCODE_BATCH):
        yield from tokenizer.encode_batch(list(texts[start : start + ENCODE_BATCH]), add_special_tokens=False)


def _block_groups(document: Document, tokenizer: Tokenizer, budget: int) -> list[tuple[list[str], list[_Block]]]:
    """Blocks with their offsets in Document.text, grouped by runs of sections with the same heading path."""
    located: list[tuple[str, int, int]] = []  # text, start, section index
    position = -2  # as if a "\n\n" came before the first section
    for section_index, section in enumerate(document.sections):
        # Mirrors Section.text and Document.text: empty blocks and empty sections leave no trace.
        blocks = [b for b in section.blocks if b]
        if not blocks:
            continue
        position += 2
        for i, block in enumerate(blocks):
            if i:
                position += 2
            if block.strip():  # whitespace-only blocks hold no tokens; they may sit inside a chunk, not be one
                located.append((block, position, section_index))
            position += len(block)

    encodings = _encodings(tokenizer, [t for t, _, _ in located])
    groups: list[tuple[list[str], list[_Block]]] = []
    for (block_text, start, section_index), encoding in zip(located, encodings, strict=True):
        heading_path = list(document.sections[section_index].heading_path)
        if not groups or groups[-1][0] != heading_path:
            groups.append((heading_path, []))
        n_tokens = len(encoding.ids)
        # A block over the smallest room a header can leave must be splittable at its tokens.
        keep = n_tokens > _smallest_room(budget)
        groups[-1][1].append(_Block(block_text, start, section_index, n_tokens, encoding if keep else None))
    return groups


def _smallest_room(budget: int) -> int:
    return max(budget - HEADER_MAX_TOKENS, budget // 2, 1)


def _header(title: str | None, heading_path: list[str], tokenizer: Tokenizer) -> tuple[str, int]:
    """The context header of chunks under `heading_path`, and its tokens (with the blank line after it)."""
    parts = [p for p in (title, *heading_path) if p]
    while parts:
        header = context_header(parts[0], parts[1:])
        n_tokens = count_tokens(header, tokenizer)
        if n_tokens <= HEADER_MAX_TOKENS:
            return header, n_tokens
        if len(parts) == 1:
            encoding = tokenizer.encode(header, add_special_tokens=False)
            header = header[: encoding.offsets[HEADER_MAX_TOKENS - 1][1]]
            return header, count_tokens(header, tokenizer)
        parts = parts[1:]
    return "", 0


def _make_chunk(index: int, span: _Span, text: str, token_count: int, document: Document, header: str) -> Chunk:
    sections = [document.sections[i] for i in span.sections]
    starts = [s.page_start for s in sections if s.page_start is not None]
    ends = [s.page_end if s.page_end is not None else s.page_start for s in sections]
    ends = [e for e in ends if e is not None]
    return Chunk(
        index=index,
        text=text,
        token_count=token_count,
        heading_path=list(span.heading_path),
        page_start=min(starts) if starts else None,
        page_end=max(ends) if ends else None,
        char_start=span.start,
        char_end=span.end,
        metadata=_merged_metadata([s.metadata for s in sections]),
        context=header,
    )


def _merged_metadata(metadatas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(metadatas[0])
    for key, pick in (("row_start", min), ("row_end", max)):
        values = [m[key] for m in metadatas if m.get(key) is not None]
        if values:
            merged[key] = pick(values)
    return merged


# --- boundaries -------------------------------------------------------------------------------


def _strengths(texts: Sequence[str]) -> list[tuple[bytes, bytes, int]]:
    """How strong the gap before each item is: a hash of the item's opening, then of its whole text.

    A run of identical items (repeated CSV rows, blank-ish lines) would all tie; numbering them within
    the run keeps their gaps distinct, and the run number depends only on the run itself. The last
    element, minus the index, makes the leftmost of any remaining tie the strongest.
    """
    keys: list[tuple[bytes, bytes, int]] = []
    repeat = 0
    for i, text in enumerate(texts):
        repeat = repeat + 1 if i and texts[i - 1] == text else 0
        opening = " ".join(text[: OPENING_CHARS * 2].split())[:OPENING_CHARS]
        keys.append((_digest(f"{opening}\x1f{repeat}"), _digest(text), -i))
    return keys


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _pack(counts: Sequence[int], texts: Sequence[str], budget: int) -> list[tuple[int, int]]:
    """Group items (blocks or sentences) with these token counts into ranges [a, b) of at most `budget`.

    Neighbours are joined across their weakest gap first, as long as the joined range still fits
    (single-linkage clustering under a size cap). Whether a gap survives depends only on the items
    between it and the nearest stronger gaps on either side, so an edit moves only nearby boundaries.
    A single item over the budget comes back as a range of its own; the caller splits it further.
    """
    n = len(counts)
    keys = _strengths(texts)
    leader = list(range(n))  # union-find over items; each cluster is a contiguous range
    size = list(counts)

    def find(i: int) -> int:
        while leader[i] != i:
            leader[i] = leader[leader[i]]
            i = leader[i]
        return i

    for gap in sorted(range(1, n), key=keys.__getitem__):  # gap g sits between items g-1 and g
        left, right = find(gap - 1), find(gap)
        if size[left] + size[right] <= budget:
            leader[right] = left
            size[left] += size[right]

    starts = [i for i in range(n) if i == 0 or find(i) != find(i - 1)]
    return list(zip(starts, [*starts[1:], n]))


# --- oversized blocks -------------------------------------------------------------------------


def _split_block(block: _Block, budget: int, overlap: int) -> list[tuple[int, int]]:
    """Character spans (relative to the block) of pieces of at most `budget` tokens, overlapping by up to
    `overlap` tokens, cut at sentence ends, else line breaks, else between words, else between tokens."""
    text, encoding = block.text, block.encoding
    assert encoding is not None  # kept for every block over the budget
    token_starts = [start for start, _ in encoding.offsets]
    word_start = [not token.startswith("##") for token in encoding.tokens]
    content_budget = budget - overlap

    def tokens_before(position: int) -> int:
        return bisect.bisect_left(token_starts, position)

    def n_tokens(unit: tuple[int, int]) -> int:
        return tokens_before(unit[1]) - tokens_before(unit[0])

    units = [(0, len(text))]
    for cut_points in (
        lambda s, e: [m.end() for m in _SENTENCE_END.finditer(text, s, e)],
        lambda s, e: [m.end() for m in _LINE_BREAK.finditer(text, s, e)],
        lambda s, e: [m.end() for m in _WORD_BREAK.finditer(text, s, e)],
        # Between BERT words (a "##" piece continues a word), then, last resort, between any tokens.
        lambda s, e: [token_starts[t] for t in range(tokens_before(s), tokens_before(e)) if word_start[t]],
        lambda s, e: token_starts[tokens_before(s) : tokens_before(e)],
    ):
        refined: list[tuple[int, int]] = []
        for unit in units:
            if n_tokens(unit) <= content_budget:
                refined.append(unit)
                continue
            cuts = [c for c in cut_points(*unit) if unit[0] < c < unit[1]]
            edges = [unit[0], *cuts, unit[1]]
            refined.extend(zip(edges, edges[1:]))
        units = refined

    pieces: list[tuple[int, int]] = []
    previous_first_token: int | None = None
    for a, b in _pack([n_tokens(u) for u in units], [text[s:e] for s, e in units], content_budget):
        start, end = units[a][0], units[b - 1][1]
        first_token = tokens_before(start)
        if previous_first_token is not None and overlap:
            overlap_token = _overlap_start(text, token_starts, word_start, first_token, previous_first_token, overlap)
            start = token_starts[overlap_token]
        previous_first_token = first_token
        pieces.append(_strip(text, start, end))
    return [p for p in pieces if p[0] < p[1]]


def _overlap_start(
    text: str, token_starts: list[int], word_start: list[bool], first: int, previous_first: int, overlap: int
) -> int:
    """Index of the token a piece starts at so that it repeats up to `overlap` tokens of the piece before,
    starting on a whole word (after whitespace if one is in reach, else at any BERT word)."""
    earliest = max(first - overlap, previous_first + 1)  # never repeat the whole of a short piece
    candidates = [t for t in range(earliest, first) if word_start[t]]
    after_space = [t for t in candidates if token_starts[t] == 0 or text[token_starts[t] - 1].isspace()]
    return (after_space or candidates or [first])[0]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
