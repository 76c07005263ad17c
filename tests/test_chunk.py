"""Chunking with the real all-MiniLM-L6-v2 tokenizer: budgets, structure, offsets, splits, stability."""

import random

import pytest

from gristmill.documents import Chunk, Document, Section
from gristmill.errors import InvalidRequest
from tasks.chunk import MAX_CONTENT_TOKENS, chunk_document, chunk_with_default_tokenizer, count_tokens, load_tokenizer

TOKENIZER = load_tokenizer()

# Each of these is exactly one token for the model, so a block of n of them is n tokens.
WORDS = (
    "apple river stone cloud green music table window garden paper light water forest silver market bridge "
    "letter winter summer animal doctor teacher mountain island ocean planet engine signal camera ticket pocket "
    "village castle mirror orange yellow purple rocket butter coffee dinner school office harbor valley desert"
).split()


def words(n: int, seed: int) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def sentence(n: int, seed: int) -> str:
    """n tokens: n - 1 words and a full stop."""
    return words(n - 1, seed).capitalize() + "."


def chunk(document: Document, max_tokens: int = 256, overlap_tokens: int = 32) -> list[Chunk]:
    return chunk_document(document, max_tokens=max_tokens, overlap_tokens=overlap_tokens, tokenizer=TOKENIZER)


def doc(*sections: Section) -> Document:
    return Document(sections=list(sections), content_format="markdown")


# --- the tokenizer ------------------------------------------------------------------------------


def test_tokenizer_counts_past_the_128_tokens_its_json_truncates_to():
    assert count_tokens("water " * 300, TOKENIZER) == 300
    assert count_tokens("Rotate keys, then restart.", TOKENIZER) == 6  # no [CLS]/[SEP]
    assert load_tokenizer() is TOKENIZER


# --- budgets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "max_tokens", "expected"),
    [
        ([127, 127], 256, [254]),  # 254 content tokens + [CLS] + [SEP] is the model's whole window
        ([127, 128], 256, [127, 128]),  # 255 would be truncated by the model
        ([127, 128], 1000, [127, 128]),  # a larger library setting is capped too
        ([100, 100], 200, [200]),  # the budget is inclusive
        ([100, 101], 200, [100, 101]),
        ([60, 60, 60, 60, 60], 120, [120, 120, 60]),
    ],
)
def test_token_budget_is_exact_and_capped_at_the_model_window(sizes, max_tokens, expected):
    document = doc(Section(blocks=[words(n, seed=i) for i, n in enumerate(sizes)]))  # no title, no header
    chunks = chunk(document, max_tokens=max_tokens)
    assert sorted(c.token_count for c in chunks) == sorted(expected)
    assert [c.index for c in chunks] == list(range(len(expected)))


def test_the_context_header_is_title_and_heading_path_and_its_tokens_come_out_of_the_budget():
    document = Document(
        sections=[
            Section(blocks=[words(127, seed=1), words(127, seed=2)], heading_path=["Guide", "Install"]),
            Section(blocks=[words(300, seed=3)], heading_path=["Guide", "Install", "On Debian"]),
            Section(blocks=[words(252, seed=4)], heading_path=["Guide", "Upgrade"]),  # fits alone, not with the header
        ],
        content_format="markdown",
        title="Guide",
    )
    chunks = chunk(document)
    assert [c.context for c in chunks] == (
        ["Guide > Install"] * 2 + ["Guide > Install > On Debian"] * 2 + ["Guide > Upgrade"] * 2
    )
    assert [c.token_count for c in chunks[:2]] == [127, 127]  # 254 together, less the header's 3
    for c in chunks:
        assert c.indexed_text == f"{c.context}\n\n{c.text}"
        assert count_tokens(c.indexed_text, TOKENIZER) <= 254
        assert c.text == document.text[c.char_start : c.char_end]


def test_every_chunk_fits_the_model_with_its_special_tokens():
    rnd = random.Random(7)
    blocks = [sentence(rnd.randint(5, 120), seed=i) for i in range(80)] + [words(700, seed=99)]
    chunks = chunk(doc(Section(blocks=blocks)))
    assert len(chunks) > 10
    for c in chunks:
        assert c.token_count == count_tokens(c.text, TOKENIZER)
        assert len(TOKENIZER.encode(c.text).ids) == c.token_count + 2 <= 256
    assert max(c.token_count for c in chunks) <= MAX_CONTENT_TOKENS == 254


def test_counts_add_up_across_blocks_for_awkward_text():
    """Blocks are budgeted by their own token counts; the joined chunk must count the same."""
    pieces = ["naïve café", "東京タワー", "🙂 ok", "a\u0007b", "x" * 150, "3.14,2.71;", "“quoted”", "t\tab"]
    rnd = random.Random(1)
    blocks = [" ".join(rnd.choice(pieces) for _ in range(rnd.randint(20, 60))) for _ in range(40)]
    for c in chunk(doc(Section(blocks=blocks))):
        parts = c.text.split("\n\n")
        assert c.token_count == sum(count_tokens(p, TOKENIZER) for p in parts) <= 254


# --- structure ------------------------------------------------------------------------------------


def test_a_heading_path_change_starts_a_new_chunk_even_when_both_would_fit():
    document = doc(
        Section(blocks=["Install with pip."], heading_path=["Guide", "Install"]),
        Section(blocks=["Run gristmill serve."], heading_path=["Guide", "Run"]),
        Section(blocks=["Then open the API docs."], heading_path=["Guide", "Run"]),
        Section(blocks=["Upgrade with pip again."], heading_path=["Guide", "Install"]),
    )
    chunks = chunk(document)
    assert [(c.text, c.heading_path) for c in chunks] == [
        ("Install with pip.", ["Guide", "Install"]),
        ("Run gristmill serve.\n\nThen open the API docs.", ["Guide", "Run"]),
        ("Upgrade with pip again.", ["Guide", "Install"]),
    ]


def test_sections_sharing_a_chunk_merge_page_and_row_ranges():
    document = Document(
        sections=[
            Section(blocks=["a,1"], heading_path=["sales.csv"], page_start=3, page_end=3,
                    metadata={"row_start": 11, "row_end": 20, "sheet": "first"}),
            Section(blocks=["b,2"], heading_path=["sales.csv"], page_start=4, page_end=5,
                    metadata={"row_start": 21, "row_end": 30, "sheet": "second"}),
            Section(blocks=["c,3"], heading_path=["sales.csv"], page_start=2, page_end=None,
                    metadata={"row_start": 1, "row_end": 10}),
        ],
        content_format="csv",
    )
    [only] = chunk(document)
    assert only.text == "a,1\n\nb,2\n\nc,3"
    assert (only.page_start, only.page_end) == (2, 5)
    assert only.metadata == {"row_start": 1, "row_end": 30, "sheet": "first"}
    assert only.heading_path == ["sales.csv"]


def test_chunk_without_pages_or_rows_has_none_and_the_sections_metadata():
    [only] = chunk(doc(Section(blocks=["def main(): pass"], metadata={"language": "python"})))
    assert (only.page_start, only.page_end) == (None, None)
    assert only.metadata == {"language": "python"}


def test_offsets_map_back_to_document_text_exactly():
    rnd = random.Random(3)
    sections = [
        Section(blocks=[], heading_path=["Empty"]),
        Section(blocks=["", words(30, 1), "   ", words(200, 2), ""], heading_path=["A"], page_start=1, page_end=1),
        Section(blocks=[""], heading_path=["A"]),
        Section(blocks=[sentence(rnd.randint(5, 90), seed=10 + i) for i in range(12)], heading_path=["A", "B"]),
        Section(blocks=["  indented code\n    more", words(20, 3)], heading_path=["C"], page_start=2, page_end=2),
    ]
    document = doc(*sections)
    chunks = chunk(document)
    text = document.text
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.text
    # Whole blocks never overlap and nothing is dropped: the chunks rebuild the document.
    assert "\n\n".join(c.text for c in chunks) == text
    # The whitespace-only block is not a chunk of its own but stays inside the one around it.
    assert chunks[0].text == words(30, 1) + "\n\n   \n\n" + words(200, 2)
    assert (chunks[0].page_start, chunks[0].heading_path) == (1, ["A"])
    assert chunks[-1].text == "  indented code\n    more\n\n" + words(20, 3)


def test_empty_document_has_no_chunks():
    assert chunk(doc()) == []
    assert chunk(doc(Section(blocks=["", "  \n "]))) == []


def test_invalid_sizes_are_refused_with_a_code():
    with pytest.raises(InvalidRequest) as raised:
        chunk(doc(Section(blocks=["x"])), max_tokens=0)
    assert raised.value.code == "invalid_chunk_size"
    with pytest.raises(InvalidRequest) as raised:
        chunk(doc(Section(blocks=["x"])), overlap_tokens=-1)
    assert raised.value.code == "invalid_chunk_size"


# --- oversized blocks ---------------------------------------------------------------------------


def _shared_tokens(chunks: list[Chunk], text: str) -> list[int]:
    """Tokens each piece after the first repeats from the end of the piece before it."""
    shared = []
    for previous, current in zip(chunks, chunks[1:]):
        assert previous.char_start < current.char_start < previous.char_end
        repeated = text[current.char_start : previous.char_end]
        assert current.text.startswith(repeated)
        shared.append(count_tokens(repeated, TOKENIZER))
    return shared


def test_oversized_paragraph_is_split_at_sentence_ends_with_overlap():
    sentences = [sentence(20, seed=i) for i in range(30)]  # 600 tokens in one paragraph
    paragraph = " ".join(sentences)
    document = doc(
        Section(blocks=[words(10, 100)], heading_path=["H"]), Section(blocks=[paragraph], heading_path=["H"])
    )
    chunks = chunk(document, max_tokens=100, overlap_tokens=10)
    first, pieces = chunks[0], chunks[1:]
    assert first.text == words(10, 100)  # the small block is not glued to a piece of the big one
    assert len(pieces) >= 7
    text = document.text
    for piece in pieces:
        assert piece.token_count <= 100
        assert text[piece.char_start : piece.char_end] == piece.text
        assert piece.text.endswith(".")
        assert piece.heading_path == ["H"]
    assert _shared_tokens(pieces, text) == [10] * (len(pieces) - 1)
    # Without the repeated words, the pieces are the sentences, in order, each exactly once.
    own = [pieces[0].text] + [
        text[previous.char_end : current.char_end].strip() for previous, current in zip(pieces, pieces[1:])
    ]
    assert " ".join(own) == paragraph
    assert all(part.endswith(".") for part in own)


def test_oversized_block_without_sentences_is_split_at_line_breaks():
    lines = [words(30, seed=i) for i in range(20)]  # 600 tokens, no full stops
    document = doc(Section(blocks=["\n".join(lines)]))
    chunks = chunk(document, max_tokens=100, overlap_tokens=0)
    assert all(c.token_count <= 100 for c in chunks)
    assert "\n".join(c.text for c in chunks) == document.text
    assert all(c.text.split("\n")[-1] in lines for c in chunks)


def test_oversized_run_of_words_is_split_between_words_with_overlap():
    block = words(900, seed=5)
    document = doc(Section(blocks=[block]))
    chunks = chunk(document, max_tokens=256, overlap_tokens=32)
    assert all(c.token_count <= 254 for c in chunks)
    assert all(c.text.split() == block[c.char_start : c.char_end].split() for c in chunks)
    shared = _shared_tokens(chunks, document.text)
    # A piece repeats 32 tokens of the one before, or all of that piece's own words if it has fewer.
    assert max(shared) == 32 and sum(s == 32 for s in shared) >= len(shared) - 1
    assert chunks[0].char_start == 0 and chunks[-1].char_end == len(block)


def test_cjk_text_is_cut_after_its_full_stops():
    block = "".join(f"这是第{i}个句子内容很长。" for i in range(60))  # 12 tokens a sentence, no spaces
    chunks = chunk(doc(Section(blocks=[block])), max_tokens=100, overlap_tokens=0)
    assert all(c.text.endswith("。") and c.token_count <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == block


def test_text_without_spaces_is_split_between_tokens():
    block = "\u6c34" * 600  # one CJK character is one token, and there is no word or sentence break
    document = doc(Section(blocks=[block]))
    chunks = chunk(document, max_tokens=100, overlap_tokens=10)
    assert all(c.token_count <= 100 for c in chunks)
    assert all(c.text == "\u6c34" * c.token_count for c in chunks)
    shared = _shared_tokens(chunks, document.text)
    assert max(shared) == 10 and sum(s == 10 for s in shared) >= len(shared) - 1
    assert chunks[-1].char_end == 600


def test_overlap_is_capped_so_pieces_move_forward():
    document = doc(Section(blocks=[words(400, seed=8)]))
    chunks = chunk(document, max_tokens=40, overlap_tokens=500)
    assert chunks == chunk(document, max_tokens=40, overlap_tokens=20)  # half the budget
    assert all(c.token_count <= 40 for c in chunks)
    assert max(_shared_tokens(chunks, document.text)) <= 20


# --- stability under edits --------------------------------------------------------------------------


def _manual(paragraphs: list[list[str]]) -> Document:
    return doc(*(Section(blocks=list(ps), heading_path=["Manual", f"Part {i + 1}"]) for i, ps in enumerate(paragraphs)))


def _paragraphs(sections: int, per_section: int, seed: int) -> list[list[str]]:
    rnd = random.Random(seed)
    def paragraph() -> str:
        return " ".join(sentence(rnd.randint(8, 25), seed=rnd.random()) for _ in range(rnd.randint(1, 5)))

    return [[paragraph() for _ in range(per_section)] for _ in range(sections)]


def _edit_middle_word(paragraph: str) -> str:
    w = paragraph.split()
    w[len(w) // 2] = "edited"
    return " ".join(w)


def test_editing_one_paragraph_changes_at_most_two_chunks():
    paragraphs = _paragraphs(sections=5, per_section=10, seed=11)
    before = {c.text for c in chunk(_manual(paragraphs))}
    assert len(before) == 14
    changed_counts = []
    for s in range(5):
        for p in range(10):
            edited = [list(ps) for ps in paragraphs]
            edited[s][p] = _edit_middle_word(edited[s][p])
            after = {c.text for c in chunk(_manual(edited))}
            assert len(after - before) <= 2, (s, p)  # chunks to re-embed
            assert len(before - after) <= 2, (s, p)  # chunks to drop
            changed_counts.append(len(after - before))
    assert changed_counts.count(1) >= 45  # usually only the paragraph's own chunk


def test_edits_do_not_shift_later_chunks_in_a_long_section():
    """Where packing from the top would shift every later chunk, only the edited neighbourhood moves."""
    rnd = random.Random(5)
    paragraphs = [[sentence(rnd.randint(20, 60), seed=i) for i in range(120)]]
    original = chunk(_manual(paragraphs))
    edited = [list(paragraphs[0])]
    edited[0][3] = edited[0][3][:-1] + ", and one more clause about the harbor."  # grows paragraph 4
    after = chunk(_manual(edited))
    old_texts, new_texts = [c.text for c in original], [c.text for c in after]
    assert len(set(new_texts) - set(old_texts)) <= 2
    assert old_texts[-20:] == new_texts[-20:]
    assert len(original) == 27  # 25 before each chunk's budget made room for its header


def test_an_edit_in_one_section_leaves_other_sections_chunks_identical():
    paragraphs = _paragraphs(sections=3, per_section=8, seed=2)
    before = chunk(_manual(paragraphs))
    edited = [list(ps) for ps in paragraphs]
    edited[1][4] = "A completely new paragraph. " * 5
    after = chunk(_manual(edited))
    for part in ("Part 1", "Part 3"):
        assert [c.text for c in before if part in c.heading_path] == [c.text for c in after if part in c.heading_path]


def test_chunking_is_deterministic():
    paragraphs = _paragraphs(sections=2, per_section=20, seed=4)
    assert chunk(_manual(paragraphs)) == chunk(_manual(paragraphs))


def test_default_tokenizer_wrapper_matches_chunk_document():
    document = _manual(_paragraphs(sections=2, per_section=6, seed=9))
    assert chunk_with_default_tokenizer(document, 128, 16) == chunk(document, max_tokens=128, overlap_tokens=16)
