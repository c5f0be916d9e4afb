"""Token features (words, shapes, character CNN/BiLSTM) and the full tagger model's gradients."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_error
from tagger.estimators._encoding import SentenceEncoder
from tagger.kernels import ops_cpu
from tagger.nn.features import TokenFeaturizer
from tagger.nn.model import TaggerModel
from tagger.nn.network import TaggingNetwork
from tagger.text.vocab import SHAPES, Vocabulary, clip_word, word_shape

SENTENCES = [["The", "cat", "sat"], ["A", "dog", "@bob", "2024"], ["cat"]]


def make_model(char_encoder, dtype=np.float64, dropout=0.3, longest_words_first=False):
    words = Vocabulary.build(t.lower() for s in SENTENCES for t in s)
    chars = Vocabulary.build(c for s in SENTENCES for t in s for c in t)
    encoder = SentenceEncoder(words, chars if char_encoder else None, lowercase=True,
                              longest_words_first=longest_words_first)
    feat = TokenFeaturizer(len(words), 4, len(SHAPES), 3, len(chars), char_encoder, 3, 2,
                           dropout)
    net = TaggingNetwork(feat.output_size, 3, hidden_size=2, num_layers=1, crf=True)
    model = TaggerModel(feat, net)
    rng = np.random.default_rng(0)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in model.init_params(rng, dtype).items()}
    return encoder, model, params


@pytest.mark.parametrize("char_encoder, longest_words_first, groups",
                         [("cnn", False, 1), ("lstm", False, 1), ("lstm", True, 1),
                          ("lstm", False, 2), ("lstm", True, 2), (None, False, 1)])
def test_full_model_gradients_match_finite_differences(char_encoder, longest_words_first, groups,
                                                       monkeypatch):
    from tagger.nn import features

    if groups > 1:  # the character LSTM's words in groups of one row upwards: 4-3, then 1
        monkeypatch.setattr(features, "_length_groups",
                            functools.partial(features._length_groups, min_rows=1))
    encoder, model, params = make_model(char_encoder, longest_words_first=longest_words_first)
    batch = encoder.batch(SENTENCES)
    tags = np.array([[0, 1, 2, 0], [1, 1, 0, 2], [2, 0, 0, 0]])

    def loss():
        return model.loss_and_grads(params, batch, tags, np.random.default_rng(5))[0]

    _, grads = model.loss_and_grads(params, batch, tags, np.random.default_rng(5))
    assert set(grads) == set(params)
    for name, arr in params.items():
        err = relative_error(numerical_gradient(loss, arr), grads[name])
        assert err < 1e-6, (name, err)


def test_encoder_deduplicates_words_and_pads():
    encoder, _, _ = make_model("cnn")
    batch = encoder.batch(SENTENCES)
    assert batch.word_ids.shape == (3, 4) and list(batch.lengths) == [3, 4, 1]
    assert batch.word_slots[0, 1] == batch.word_slots[2, 0]  # "cat" twice, one character row
    assert batch.char_ids.shape[0] == len({t for s in SENTENCES for t in s})
    assert (batch.word_slots[2, 1:] == -1).all() and (batch.word_ids[2, 1:] == 0).all()
    unknown = encoder.batch([["zebra"]])
    assert unknown.word_ids[0, 0] == 1  # the unknown id


def test_longest_words_first_orders_the_character_rows_and_keeps_each_tokens_row():
    encoder, _, _ = make_model("lstm", longest_words_first=True)
    plain, _, _ = make_model("lstm")
    batch, unsorted = encoder.batch(SENTENCES), plain.batch(SENTENCES)
    assert list(batch.char_lengths) == sorted(unsorted.char_lengths, reverse=True)
    assert list(batch.char_lengths) != list(unsorted.char_lengths)  # the order did change
    for got, ref in ((batch, encoder), (unsorted, plain)):
        for b, sentence in enumerate(SENTENCES):
            for t, token in enumerate(sentence):
                row = got.word_slots[b, t]
                ids = got.char_ids[row, :got.char_lengths[row]]
                assert list(ids) == list(ref._char_ids(token)), (token, row)
    np.testing.assert_array_equal(batch.word_ids, unsorted.word_ids)


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_char_lstm_training_and_prediction_paths_agree(dtype, tol):
    # Training gathers the input projections from emb.char @ W; prediction multiplies each
    # character's embedding: the same vectors up to rounding, in either word order.
    for longest_words_first in (False, True):
        encoder, model, params = make_model("lstm", dtype, dropout=0.0,
                                            longest_words_first=longest_words_first)
        batch = encoder.batch(SENTENCES)
        trained, _ = model.featurizer.forward(params, batch)
        predicted, _ = model.featurizer.forward(params, batch, need_backward=False)
        np.testing.assert_allclose(trained, predicted, rtol=tol, atol=tol)
        assert np.abs(trained[..., -4:]).max() > 0.01  # the character part is not all zero


@pytest.mark.parametrize("longest_words_first", [False, True])
def test_a_batch_without_words_has_zero_character_gradients(longest_words_first):
    encoder, model, params = make_model("lstm", longest_words_first=longest_words_first)
    batch = encoder.batch([[], []])
    x, cache = model.featurizer.forward(params, batch, np.random.default_rng(0))
    assert x.shape == (2, 0, model.featurizer.output_size)
    grads = model.featurizer.backward(params, batch, cache, np.zeros_like(x))
    for name in ("emb.char", "char.rnn.0.fwd.W", "char.rnn.0.fwd.U", "char.rnn.0.bwd.b"):
        assert grads[name].shape == params[name].shape and not grads[name].any(), name


def test_length_groups():
    from tagger.nn.features import _length_groups

    assert _length_groups(np.array([4, 4, 3, 3, 3, 3, 1]), min_rows=1) == [(0, 6), (6, 7)]
    lengths = np.array([30, 9, 8, 5, 4, 2, 2, 1])
    assert _length_groups(lengths, min_rows=1) == [(0, 1), (1, 4), (4, 5), (5, 7), (7, 8)]
    assert _length_groups(lengths, min_rows=3) == [(0, 3), (3, 6), (6, 8)]
    assert _length_groups(np.array([5])) == [(0, 1)]
    assert _length_groups(np.array([], np.int64)) == []


def test_word_dropout_only_hits_rare_words():
    words = Vocabulary(["common", "rare"], [10_000, 1])
    encoder = SentenceEncoder(words, None, lowercase=True)
    batch = encoder.batch([["common", "rare"]] * 2000, rng=np.random.default_rng(0), unk_alpha=0.25)
    dropped = (batch.word_ids == 1).mean(axis=0)
    assert dropped[0] < 0.001 and abs(dropped[1] - 0.2) < 0.03  # 0.25 / (0.25 + 1)


def test_ops_kernels_match_numpy():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(6, 3))
    ids = np.array([[0, 5, -1], [2, 2, 1]])
    out = np.empty((2, 3, 3))
    ops_cpu.embedding_lookup(table, ids, out)
    np.testing.assert_array_equal(out[ids >= 0], table[ids[ids >= 0]])
    assert not out[0, 2].any()
    d_out = rng.normal(size=out.shape)
    d_table = np.full_like(table, 99.0)  # overwritten, not accumulated into
    ops_cpu.embedding_backward(ids, d_out, d_table)
    expected = np.zeros_like(table)
    np.add.at(expected, ids[ids >= 0], d_out[ids >= 0])
    np.testing.assert_allclose(d_table, expected)


def _char_cnn_reference(table, char_ids, lengths, width, W, b):
    """The character CNN written over padded windows: out[u] = max over the word's positions
    of its windows @ W + b, and the gradients of sum(out * d_out) by autodiff-free algebra."""
    U, L = char_ids.shape
    C = table.shape[1]
    half = width // 2
    windows = np.zeros((U, L, width * C))
    for u in range(U):
        for p in range(lengths[u]):
            for i in range(width):
                q = p + i - half
                if 0 <= q < lengths[u]:
                    windows[u, p, i * C:(i + 1) * C] = table[char_ids[u, q]]
    conv = windows @ W + b
    out = np.zeros((U, W.shape[1]))
    arg = np.full((U, W.shape[1]), -1)
    for u in range(U):
        if lengths[u]:
            arg[u] = conv[u, : lengths[u]].argmax(axis=0)
            out[u] = conv[u, arg[u], np.arange(W.shape[1])]
    return windows, out, arg


def test_char_cnn_kernels_match_a_padded_reference():
    rng = np.random.default_rng(7)
    V, C, F, width = 9, 4, 6, 5
    lengths = np.array([3, 0, 1, 7, 2])
    char_ids = np.zeros((5, 7), np.int64)
    for u, n in enumerate(lengths):
        char_ids[u, :n] = rng.integers(0, V, n)
    table, W, b = rng.normal(size=(V, C)), rng.normal(size=(width * C, F)), rng.normal(size=F)
    padded, expected, arg = _char_cnn_reference(table, char_ids, lengths, width, W, b)

    windows = np.full((lengths.sum(), width * C), np.nan)
    ops_cpu.char_windows(table, char_ids, lengths, width, windows)
    valid = np.arange(7) < lengths[:, None]
    np.testing.assert_array_equal(windows, padded[valid])
    out, argmax = np.empty((5, F)), np.empty((5, F), np.int64)
    ops_cpu.char_max_pool(windows @ W, b, lengths, out, argmax)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    np.testing.assert_array_equal(argmax, np.where(arg >= 0, first[:, None] + arg, -1))

    # Gradients of sum(out * d_out) against the padded formulation's chain rule.
    d_out = rng.normal(size=(5, F))
    d_conv = np.zeros((5, 7, F))
    for u in range(5):
        if lengths[u]:
            d_conv[u, arg[u], np.arange(F)] = d_out[u]
    d_windows = d_conv @ W.T
    want_table = np.zeros_like(table)
    half = width // 2
    for u in range(5):
        for p in range(lengths[u]):
            for i in range(width):
                q = p + i - half
                if 0 <= q < lengths[u]:
                    want_table[char_ids[u, q]] += d_windows[u, p, i * C:(i + 1) * C]
    dW_t, db, d_table = np.full((F, width * C), 9.0), np.full(F, 9.0), np.full((V, C), 9.0)
    ops_cpu.char_cnn_backward(char_ids, lengths, width, windows, np.ascontiguousarray(W.T),
                              argmax, d_out, dW_t, db, d_table)
    np.testing.assert_allclose(dW_t.T, padded.reshape(-1, width * C).T @ d_conv.reshape(-1, F),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, d_out[lengths > 0].sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(d_table, want_table, rtol=1e-12, atol=1e-12)


def test_word_shapes_and_clipping():
    names = {t: SHAPES[word_shape(t)] for t in
             ["cat", "Cat", "CAT", "iPhone", "2024", "3.5%", "A4", "...", "http://x.co",
              "@bob", "#tbt", "I"]}
    assert names == {"cat": "lower", "Cat": "title", "CAT": "upper", "iPhone": "mixed",
                     "2024": "number", "3.5%": "number", "A4": "has-digit", "...": "punct",
                     "http://x.co": "url", "@bob": "mention", "#tbt": "hashtag", "I": "title"}
    assert clip_word("abcdefghij", 4) == "abij" and clip_word("abc", 4) == "abc"


@pytest.mark.parametrize("pooling", ["last", "attention"])
def test_full_classifier_model_gradients_match_finite_differences(pooling):
    from tagger.nn.classifier import ClassifierNetwork
    from tagger.nn.model import ClassifierModel

    words = Vocabulary.build(t.lower() for s in SENTENCES for t in s)
    chars = Vocabulary.build(c for s in SENTENCES for t in s for c in t)
    encoder = SentenceEncoder(words, chars, lowercase=True)
    feat = TokenFeaturizer(len(words), 4, len(SHAPES), 3, len(chars), "cnn", 3, 2, 0.3)
    model = ClassifierModel(feat, ClassifierNetwork(feat.output_size, 3, hidden_size=2,
                                                    pooling=pooling, dropout=0.2))
    rng = np.random.default_rng(0)
    params = {k: v + rng.normal(0, 0.1, v.shape)
              for k, v in model.init_params(rng, np.float64).items()}
    batch = encoder.batch(SENTENCES)
    labels, weights = np.array([2, 0, 1]), np.array([1.0, 0.5, 2.0])

    def loss():
        return model.loss_and_grads(params, batch, labels, np.random.default_rng(5), weights)[0]

    _, grads = model.loss_and_grads(params, batch, labels, np.random.default_rng(5), weights)
    assert set(grads) == set(params)
    for name, arr in params.items():
        err = relative_error(numerical_gradient(loss, arr), grads[name])
        assert err < 1e-6, (name, err)


def test_numeric_inputs_pass_through_unchanged():
    from tagger.nn.classifier import ClassifierNetwork
    from tagger.nn.features import NumericBatch, NumericFeaturizer
    from tagger.nn.model import ClassifierModel

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 3))
    lengths = np.array([5, 2])
    x[1, 2:] = 0.0
    model = ClassifierModel(NumericFeaturizer(3), ClassifierNetwork(3, 2, hidden_size=4))
    params = model.init_params(rng, np.float64)
    batch = NumericBatch(x, lengths)
    np.testing.assert_array_equal(model.logits(params, batch),
                                  model.network.logits(params, x, lengths))
    _, grads = model.loss_and_grads(params, batch, np.array([0, 1]))
    assert set(grads) == set(params)  # no parameters of its own
    with pytest.raises(ValueError, match="n_features must be positive"):
        NumericFeaturizer(0)


def test_batch_encoding_by_token_cache_matches_per_sentence_encoding():
    words = Vocabulary.build(t.lower() for s in SENTENCES[:2] for t in s)
    chars = Vocabulary.build(c for s in SENTENCES for t in s for c in t)
    encoder = SentenceEncoder(words, chars, lowercase=True)
    sentences = [*SENTENCES, ["UNSEEN", "The", "the"], []]
    fresh = SentenceEncoder(words, chars, lowercase=True)
    expected = fresh.batch(sentences, [fresh.encode(s) for s in sentences])
    for _ in range(2):  # the second time from the cache
        got = encoder.batch(sentences)
        for name in ("word_ids", "shape_ids", "lengths", "word_slots", "char_ids",
                     "char_lengths"):
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), name)
    assert got.word_ids[3].tolist() == [1, words.index("the"), words.index("the"), 0]
    assert got.shape_ids[3, :3].tolist() == [SHAPES.index("upper"), SHAPES.index("title"),
                                             SHAPES.index("lower")]
    assert got.word_ids[4].tolist() == [0, 0, 0, 0] and got.lengths[4] == 0
