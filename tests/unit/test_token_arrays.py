"""Token arrays for pretraining: text sources tokenized into flat EOS-separated arrays with a
summary, raw (headerless, Dolma-style) arrays read as they are, and each kind of bad input refused
with a message naming the file."""

import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from olmorl.data.loading import DataError
from olmorl.data.token_arrays import (
    load_token_source,
    open_token_array,
    read_documents,
    token_dtype,
    tokenize_files,
)
from olmorl.models.tiny import ensure_tiny_model

DOCUMENTS = ["Question: What is 3 + 4?", "The answer is 7.", "t5 t6 t7"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("token_arrays") / "m"
    ensure_tiny_model(path, "tiny")
    return path


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_tokenize_files_writes_each_document_followed_by_eos_and_a_summary(
    tmp_path, tokenizer_dir, tokenizer
):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in DOCUMENTS])
    out_dir = tmp_path / "out"

    (written,) = list(tokenize_files([source], str(tokenizer_dir), out_dir))

    eos = tokenizer.eos_token_id
    expected = [
        t for text in DOCUMENTS for t in [*tokenizer.encode(text, add_special_tokens=False), eos]
    ]
    array = np.load(out_dir / "docs.npy")
    assert array.dtype == np.uint16  # the tiny vocabulary fits
    assert array.tolist() == expected
    # Documents are recoverable: split at EOS, each decodes to its text.
    ends = np.flatnonzero(array == eos)
    assert len(ends) == len(DOCUMENTS) and ends[-1] == len(array) - 1
    pieces = np.split(array, ends[:-1] + 1)
    assert [tokenizer.decode(p[:-1]) for p in pieces] == DOCUMENTS

    summary = json.loads((out_dir / "docs.json").read_text())
    assert written == (str(source), summary)
    assert summary["documents"] == len(DOCUMENTS)
    assert summary["tokens"] == len(expected)
    assert summary["dtype"] == "uint16"
    assert summary["eos_token_id"] == eos
    assert summary["array"] == str(out_dir / "docs.npy")


def test_text_source_loaded_directly_equals_its_tokenized_array(tmp_path, tokenizer_dir, tokenizer):
    source = write_jsonl(tmp_path / "docs.jsonl", [{"body": t} for t in DOCUMENTS])
    list(tokenize_files([source], str(tokenizer_dir), tmp_path / "out", text_field="body"))

    direct = load_token_source(str(source), tokenizer, text_field="body")
    from_array = load_token_source(str(tmp_path / "out" / "docs.npy"), tokenizer)
    assert direct.tolist() == from_array.tolist()
    assert len(direct) > len(DOCUMENTS)


def test_token_dtype_is_uint16_while_every_id_fits():
    assert token_dtype(664) == np.uint16
    assert token_dtype(65_536) == np.uint16  # ids 0..65535
    assert token_dtype(65_537) == np.uint32
    assert token_dtype(100_278) == np.uint32  # Olmo 3's vocabulary


@pytest.mark.parametrize("dtype", ["uint32", "uint16"])
def test_headerless_raw_array_reads_as_the_data(tmp_path, dtype):
    data = np.array([0, 7, 3, 65_535, 12, 3], dtype=dtype)
    path = tmp_path / "part-0.bin"
    path.write_bytes(data.tobytes())

    array = open_token_array(path, raw_dtype=dtype)

    assert array.dtype == np.dtype(dtype)
    assert array.tolist() == data.tolist()
    with pytest.raises(ValueError):
        array[0] = 1  # read-only


def test_raw_array_read_as_the_wrong_width_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "odd.bin"
    path.write_bytes(np.arange(3, dtype=np.uint16).tobytes())  # 6 bytes: not whole uint32s
    with pytest.raises(DataError, match=r"odd\.bin: 6 bytes is not a whole number of uint32"):
        open_token_array(path)


def test_missing_token_array_is_refused_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.npy: no such file"):
        open_token_array(tmp_path / "nothere.npy")


def test_npy_array_that_is_not_flat_integers_is_refused(tmp_path):
    path = tmp_path / "floats.npy"
    np.save(path, np.zeros(4, dtype=np.float32))
    with pytest.raises(DataError, match=r"floats\.npy: expected a flat integer token array"):
        open_token_array(path)
    np.save(path, np.zeros((2, 2), dtype=np.uint16))
    with pytest.raises(DataError, match=r"floats\.npy: .*shape \(2, 2\)"):
        open_token_array(path)


@pytest.mark.parametrize(
    ("rows", "bad_row", "got"),
    [
        ([{"text": "fine"}, {"body": "no text field"}], 2, "NoneType"),
        ([{"text": "fine"}, {"text": "fine"}, {"text": 5}], 3, "int"),
    ],
)
def test_row_without_string_text_names_file_and_row(tmp_path, rows, bad_row, got):
    source = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        list(read_documents(str(source)))
    assert str(info.value) == (f"{source} row {bad_row}: field 'text' must be a string, got {got}")


def test_tokenize_files_refuses_a_bad_row_before_writing_its_array(tmp_path, tokenizer_dir):
    source = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"text": ["a", "list"]}])
    with pytest.raises(DataError, match=r"bad\.jsonl row 2"):
        list(tokenize_files([source], str(tokenizer_dir), tmp_path / "out"))
    assert not (tmp_path / "out" / "bad.npy").exists()


def test_token_ids_outside_the_vocabulary_are_refused_naming_the_file(tmp_path, tokenizer):
    vocab = len(tokenizer)
    fits = tmp_path / "fits.npy"
    np.save(fits, np.array([0, vocab - 1, 3], dtype=np.uint16))
    assert load_token_source(str(fits), tokenizer).tolist() == [0, vocab - 1, 3]

    other = tmp_path / "other_tokenizer.npy"
    np.save(other, np.array([1, 2, vocab, 3], dtype=np.uint16))
    with pytest.raises(DataError, match=rf"other_tokenizer\.npy: token id {vocab} is outside"):
        load_token_source(str(other), tokenizer)

    raw = tmp_path / "dolma.bin"
    raw.write_bytes(np.array([5, 100_000, 3], dtype=np.uint32).tobytes())
    with pytest.raises(DataError, match=r"dolma\.bin: token id 100000 is outside"):
        load_token_source(str(raw), tokenizer)


def test_sources_sharing_a_stem_are_refused_before_anything_is_written(tmp_path, tokenizer_dir):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_jsonl(tmp_path / "a" / "web.jsonl", [{"text": "x"}])
    second = write_jsonl(tmp_path / "b" / "web.jsonl", [{"text": "y"}])
    unique = write_jsonl(tmp_path / "code.jsonl", [{"text": "z"}])
    with pytest.raises(DataError, match=r"share the file name web\b"):
        list(tokenize_files([unique, first, second], str(tokenizer_dir), tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_an_empty_raw_array_is_refused_naming_it(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"{empty}: empty"):
        open_token_array(empty)


def test_tokenizing_a_source_over_its_own_summary_is_refused(tmp_path, tokenizer_dir):
    source = tmp_path / "web.json"
    source.write_text('[{"text": "a b"}]')
    with pytest.raises(DataError, match="would overwrite it"):
        list(tokenize_files([source], str(tokenizer_dir), tmp_path))
    assert source.read_text() == '[{"text": "a b"}]'
