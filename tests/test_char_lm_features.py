"""Contextual character embeddings: SequenceTagger(char_lm=(forward, backward))."""

from __future__ import annotations

import numpy as np
import pytest

import tagger
from tagger import CharLanguageModel, SequenceTagger
from tagger.errors import ModelFileError
from tagger.nn.context import CharLMFeatures
from tagger.persist import CONTAINER_KEYS, load_model, save_model

TEXT = ["the cat sat on the mat", "a dog ran in the park", "Maria flew to Paris on Monday"] * 20
X = [line.split() for line in TEXT]
Y = [["B-PER" if w[0].isupper() else "O" for w in s] for s in X]


def lm(direction: str, hidden: int) -> CharLanguageModel:
    return CharLanguageModel(hidden_size=hidden, embedding_dim=8, bptt=20, batch_size=4,
                             max_epochs=2, num_layers=2 if direction == "forward" else 1,
                             direction=direction, random_state=0).fit(TEXT)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lms")
    forward, backward = lm("forward", 16), lm("backward", 12)
    forward.save(folder / "fwd.tagger")
    backward.save(folder / "bwd.tagger")
    return forward, backward, folder / "fwd.tagger", folder / "bwd.tagger"


@pytest.fixture(scope="module")
def fitted(pair):
    _, _, fwd_path, bwd_path = pair
    return SequenceTagger(hidden_size=16, word_dim=16, char_encoder="cnn", char_dim=8,
                          char_hidden_size=8, max_epochs=2, random_state=0,
                          char_lm=(str(fwd_path), str(bwd_path))).fit(X, Y)


def features_of(model: SequenceTagger) -> CharLMFeatures:
    return model._model.featurizer.context


def last_state(network, params: dict, prefix: str, side: str, context: CharLMFeatures):
    """The top layer's state after reading ``prefix`` from the zero state, alone."""
    ids = context._ids(prefix, side)[None, :]
    top, _, _ = network._forward(context._side_params(params, side), ids,
                                 network.initial_state(1), None, False)
    return top[0, -1]


def test_token_states_are_read_at_word_boundaries_on_random_unicode(fitted):
    rng = np.random.default_rng(0)
    alphabet = [chr(c) for c in (*range(0x21, 0x7f), *range(0xa1, 0x2ff), 0x4e2d, 0x1f600,
                                 0x0301, 0x05d0)]
    context = features_of(fitted)
    params = fitted.params_
    sentences = [["".join(rng.choice(alphabet, size=rng.integers(1, 7))) for _ in range(n)]
                 for n in (5, 1, 3)]
    got = context.features(params, sentences, T=6)
    H = context.networks["fwd"].hidden_size
    for b, tokens in enumerate(sentences):
        text, starts, ends = context.layout(tokens)
        assert text == "\n" + " ".join(tokens) + " "
        for i, token in enumerate(tokens):
            assert text[starts[i]:ends[i]] == token
            want_fwd = last_state(context.networks["fwd"], params, text[:ends[i]], "fwd",
                                  context)
            want_bwd = last_state(context.networks["bwd"], params, text[starts[i]:][::-1],
                                  "bwd", context)
            # New taggers add the states after the neighbouring spaces (the text ends with
            # one, and starts with a newline).
            assert context.read == "edge+space"
            want_fwd = want_fwd + last_state(context.networks["fwd"], params,
                                             text[:ends[i] + 1], "fwd", context)
            want_bwd = want_bwd + last_state(context.networks["bwd"], params,
                                             text[starts[i] - 1:][::-1], "bwd", context)
            np.testing.assert_allclose(got[b, i, :H], want_fwd, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got[b, i, H:], want_bwd, rtol=1e-5, atol=1e-6)
        assert not got[b, len(tokens):].any()  # zero past the last token


def test_a_sentence_gets_the_same_features_alone_and_in_a_batch(fitted):
    context = features_of(fitted)
    batch = [["Maria", "flew"], ["a", "dog", "ran", "in", "the", "park"], ["x"]]
    together = context.features(fitted.params_, batch, T=6)
    for b, tokens in enumerate(batch):
        alone = context.features(fitted.params_, [tokens], T=len(tokens))
        np.testing.assert_allclose(together[b, :len(tokens)], alone[0], rtol=1e-5, atol=1e-6)


def test_features_held_for_training_are_those_computed_and_bounded(fitted, monkeypatch):
    import tagger.nn.context as context_module

    context = features_of(fitted)
    params = fitted.params_
    batch = X[:5]
    T = max(map(len, batch)) + 2
    expected = context.features(params, batch, T)
    calls = []
    compute = context._features
    monkeypatch.setattr(context, "_features",
                        lambda p, s, t: calls.append(len(s)) or compute(p, s, t))
    context.hold()
    try:
        first = context.features(params, batch, T)
        again = context.features(params, list(reversed(batch)), T)
        np.testing.assert_allclose(first, expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(again, first[::-1])
        # The batch's distinct sentences computed once (X repeats its three sentences).
        assert calls == [5]
        assert (first[:, -2:] == 0).all()  # zero past each sentence's last token
        # Other weights: the kept features are not theirs.
        other = dict(params)
        other["char_lm.fwd.emb.char"] = params["char_lm.fwd.emb.char"] * 2
        context.features(other, batch[:1], T)
        assert calls == [5, 1]
        # Over the budget: computed every time, never kept.
        context.hold()
        monkeypatch.setattr(context_module, "HOLD_BYTES", 0)
        context.features(params, batch[:2], T)
        context.features(params, batch[:2], T)
        assert calls == [5, 1, 2, 2] and context._held == {}
    finally:
        context.release()
    assert context._held is None
    context.features(params, batch[:1], T)  # released: computed again
    assert calls[-1] == 1


def test_training_holds_the_features_and_lets_them_go(pair):
    _, _, fwd_path, bwd_path = pair
    model = SequenceTagger(hidden_size=8, word_dim=8, char_encoder=None, max_epochs=2,
                           random_state=0, char_lm=(str(fwd_path), str(bwd_path)))
    seen = []
    model.fit(X, Y, callback=lambda event, info: seen.append(
        len(features_of(info["estimator"])._held or {})) if event == "epoch_end" else None)
    assert seen[0] == seen[1] == len(set(map(tuple, X)))  # held while training
    assert features_of(model)._held is None  # and let go after


def test_the_language_models_are_frozen_and_their_weights_kept(fitted, pair):
    forward, backward, _, _ = pair
    for side, model in (("fwd", forward), ("bwd", backward)):
        for name, value in model.params_.items():
            np.testing.assert_array_equal(fitted.params_[f"char_lm.{side}.{name}"], value)
    width = fitted._model.featurizer.output_size
    assert width == 16 + 16 + 8 + 16 + 12  # words, shapes, character CNN, forward, backward


def test_model_file_holds_the_language_models(fitted, tmp_path):
    path = tmp_path / "tagger.tagger"
    fitted.save(path)
    loaded = tagger.load(path)
    assert loaded.get_params()["char_lm"] is None
    assert loaded.char_lm_config_ == fitted.char_lm_config_
    sentences = [["Maria", "ran", "to", "Oslo"], ["the", "mat"]]
    assert loaded.predict(sentences) == fitted.predict(sentences)
    np.testing.assert_array_equal(loaded.predict_proba(sentences)[0],
                                  fitted.predict_proba(sentences)[0])


def test_a_file_from_before_read_was_recorded_reads_the_edges_alone(fitted, tmp_path):
    """Taggers saved before ``read`` was recorded read each token's edge states alone: they
    load and predict as they were trained."""
    context = features_of(fitted)
    sentences = [["Maria", "ran", "to", "Oslo"], ["the", "mat"]]
    edge = CharLMFeatures(context.networks["fwd"], context.networks["bwd"],
                          list(context.chars["fwd"]), list(context.chars["bwd"]))
    assert edge.read == "edge"
    path = tmp_path / "old.tagger"
    fitted.save(path)
    config, arrays = load_model(path)
    del config["char_lm"]["read"]
    old = tmp_path / "old2.tagger"
    save_model(old, config["kind"], {k: v for k, v in config.items()
                                     if k not in CONTAINER_KEYS}, arrays)
    loaded = tagger.load(old)
    assert features_of(loaded).read == "edge"
    np.testing.assert_allclose(features_of(loaded).features(loaded.params_, sentences, 4),
                               edge.features(fitted.params_, sentences, 4), rtol=1e-6)
    assert "read" not in loaded.char_lm_config_
    with pytest.raises(ValueError, match="read must be one of"):
        CharLMFeatures(context.networks["fwd"], context.networks["bwd"],
                       list(context.chars["fwd"]), list(context.chars["bwd"]), read="middle")


def test_stream_tagging_uses_the_features(fitted):
    from tagger.stream import tag_stream

    sentences = [["Maria", "ran"], ["the", "cat", "sat"]]
    streamed = list(tag_stream(fitted, iter(sentences)))
    assert [list(r["tags"]) for r in streamed] == fitted.predict(sentences)


@pytest.mark.parametrize("char_lm, error, match", [
    ("one.tagger", ValueError, "pair"),
    (("a",), ValueError, "pair"),
])
def test_char_lm_must_be_a_pair(char_lm, error, match):
    with pytest.raises(error, match=match):
        SequenceTagger(char_lm=char_lm, max_epochs=1).fit(X, Y)


def test_directions_must_be_forward_then_backward(pair):
    forward, backward, _, _ = pair
    with pytest.raises(ValueError, match="reads backward"):
        SequenceTagger(char_lm=(backward, forward), max_epochs=1).fit(X, Y)


def test_a_tagger_file_is_not_a_language_model(fitted, tmp_path, pair):
    path = tmp_path / "tagger.tagger"
    fitted.save(path)
    _, _, _, bwd_path = pair
    with pytest.raises(ModelFileError, match="CharLanguageModel"):
        SequenceTagger(char_lm=(str(path), str(bwd_path)), max_epochs=1).fit(X, Y)


def test_cuda_is_refused(pair):
    _, _, fwd_path, bwd_path = pair
    with pytest.raises(ValueError, match="CPU"):
        SequenceTagger(char_lm=(fwd_path, bwd_path), device="cuda").fit(X, Y)


@pytest.mark.parametrize("edit, match", [
    (lambda lm: lm["fwd"].update(cell="rnn"), "cell"),
    (lambda lm: lm["bwd"]["vocabulary"]["items"].__setitem__(0, "ab"), "single characters"),
    (lambda lm: lm.pop("bwd"), "backward"),
    (lambda lm: lm["fwd"].update(hidden_size=10**9), "hidden_size"),
    (lambda lm: lm.update(read="middle"), "read must be one of"),
    (lambda lm: lm.update(read=["edge"]), "read must be one of"),
    (lambda lm: lm.update(extra=1), "forward"),
])
def test_a_bad_language_model_description_is_refused(fitted, tmp_path, edit, match):
    path = tmp_path / "tagger.tagger"
    fitted.save(path)
    config, arrays = load_model(path)
    edit(config["char_lm"])
    bad = tmp_path / "bad.tagger"
    save_model(bad, config["kind"], {k: v for k, v in config.items()
                                     if k not in CONTAINER_KEYS}, arrays)
    with pytest.raises(ModelFileError, match=match):
        tagger.load(bad)


# ----------------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------------


def test_train_with_char_lm_on_the_command_line(pair, tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from tagger.cli import app

    _, _, fwd_path, bwd_path = pair
    data = Path(__file__).resolve().parents[1] / "data" / "sample-ner" / "dev.conll"
    out = tmp_path / "ner.tagger"
    runner = CliRunner()
    args = ["train", "--train", str(data), "-o", str(out), "--hidden-size", "8",
            "--word-dim", "8", "--char-encoder", "none", "--max-epochs", "1", "--threads", "1",
            "--quiet", "--char-lm", str(fwd_path), str(bwd_path)]
    result = runner.invoke(app, args, prog_name="tagger")
    assert result.exit_code == 0, result.output
    model = tagger.load(out)
    assert set(model.char_lm_config_) == {"fwd", "bwd", "read"}
    assert model.char_lm_config_["read"] == "edge+space"
    assert model._model.featurizer.context_size == 16 + 12
    # Not for a language model, and the output may not replace a language model file.
    refused = runner.invoke(app, ["train", "--task", "lm", "--train", str(data), "-o",
                                  str(tmp_path / "lm.tagger"), "--char-lm", str(fwd_path),
                                  str(bwd_path)], prog_name="tagger")
    assert refused.exit_code == 2 and "--char-lm" in refused.output
    clobber = runner.invoke(app, [*args[:4], str(fwd_path), *args[5:]], prog_name="tagger",
                            env={"COLUMNS": "220", "TERMINAL_WIDTH": "220"})
    assert clobber.exit_code != 0 and "language model" in clobber.output
