"""What the estimators accept as X, and the tokenizers for raw strings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagger.estimators._inputs import NumericEncoder, check_sequences
from tagger.text.tokenize import make_tokenizer


def test_token_lists_and_strings():
    kind, X = check_sequences([("a", "b"), ["c"], []])
    assert kind == "text" and X == [["a", "b"], ["c"], []]
    kind, X = check_sequences(["Hello, world!", "ok"], tokenizer=make_tokenizer("regex"))
    assert kind == "text" and X == [["Hello", ",", "world", "!"], ["ok"]]
    with pytest.raises(TypeError, match="not strings"):
        check_sequences(["Hello"])
    with pytest.raises(ValueError, match=r"X\[0\]\[1\] is an empty token"):
        check_sequences([["a", ""]])
    with pytest.raises(TypeError, match=r"X\[1\] must be a list of tokens"):
        check_sequences([["a"], {"b": 1}])
    with pytest.raises(ValueError, match=r"X\[1\] is an empty sequence"):
        check_sequences([["a"], []], allow_empty=False)
    with pytest.raises(TypeError, match="fitted on numeric"):
        check_sequences([["a"]], expect="numeric")


def test_numeric_forms():
    kind, X = check_sequences([np.ones((3, 2)), [[1, 2]], np.zeros((0, 2))])
    assert kind == "numeric" and [x.shape for x in X] == [(3, 2), (1, 2), (0, 2)]
    assert all(x.dtype == np.float64 and x.flags.c_contiguous for x in X)
    _, X = check_sequences([np.arange(4), [1.5, 2.5]])  # 1-D: one feature per step
    assert [x.shape for x in X] == [(4, 1), (2, 1)]
    _, X = check_sequences(np.zeros((5, 7, 3), np.float32))
    assert len(X) == 5 and X[0].shape == (7, 3)
    _, X = check_sequences(np.zeros((5, 7), np.int64))
    assert len(X) == 5 and X[0].shape == (7, 1)
    with pytest.raises(ValueError, match="3 dimensions"):
        check_sequences(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"X\[0\] must have shape \(length, n_features\)"):
        check_sequences([np.zeros((2, 2, 2))])
    with pytest.raises(ValueError, match=r"step 2, feature 1"):
        check_sequences([np.zeros((2, 2)), [[0, 0], [0, 0], [0, -np.inf]]])


def test_numeric_encoder_standardises_and_pads():
    rng = np.random.default_rng(0)
    X = [rng.normal(3, 2, size=(n, 2)) for n in (5, 9, 1)]
    X[0][:, 1] = 7.0  # a constant feature: scale 1, not a division by zero
    X[1][:, 1] = 7.0
    X[2][:, 1] = 7.0
    enc = NumericEncoder.fit(X)
    steps = np.concatenate(X)
    np.testing.assert_allclose(enc.mean, steps.mean(axis=0))
    assert enc.scale[0] == pytest.approx(steps[:, 0].std()) and enc.scale[1] == 1.0
    batch = enc.batch(X)
    assert batch.x.shape == (3, 9, 2) and batch.x.dtype == np.float32
    assert batch.lengths.tolist() == [5, 9, 1] and batch.n_tokens == 15
    np.testing.assert_allclose(batch.x[1], (X[1] - enc.mean) / enc.scale, rtol=1e-6)
    assert (batch.x[2, 1:] == 0).all()  # padding stays zero
    with pytest.raises(ValueError, match="fitted with 2"):
        enc.check_features([np.zeros((1, 3))])


def test_tokenizers():
    regex = make_tokenizer("regex")
    assert regex("Don't pay $1,000.50 for state-of-the-art stuff!!") == [
        "Don't", "pay", "$", "1,000.50", "for", "state-of-the-art", "stuff", "!", "!"]
    assert make_tokenizer("whitespace")(" a\tb  c\n") == ["a", "b", "c"]
    assert make_tokenizer(r"(\w)+")("ab cd") == ["ab", "cd"]  # whole matches, not groups
    assert make_tokenizer(str.split) is str.split
    with pytest.raises(TypeError, match="tokenizer must be"):
        make_tokenizer(3)


@given(st.text())
def test_regex_tokens_are_non_empty_and_cover_every_non_space(text):
    tokens = make_tokenizer("regex")(text)
    assert all(tokens)
    assert "".join(tokens) == "".join(text.split())
