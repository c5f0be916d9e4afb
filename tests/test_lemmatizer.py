"""Lemmatizer: the training dictionary answers for (form, UPOS) pairs it saw (irregular forms
included), the transducer for the others (it learns suffix rules that depend on the UPOS tag),
model files round trip, and bad input gets clear errors."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from tagger import Lemmatizer, load


def stems(seed, n):
    """Distinct made-up stems of 3 to 5 letters."""
    rng = random.Random(seed)
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice("bcdfgklmnprst") + rng.choice("aeiou")
                        for _ in range(rng.randint(1, 2))) + rng.choice("bcdfgklmnprst"))
    return sorted(out)


STEMS = stems(0, 330)  # 300 for training, 20 for development, 10 never seen


def corpus(seed, n, stems):
    """Sentences of (form, UPOS, lemma): NOUN plural -s, VERB -ing and -ed, and 'went'."""
    rng = random.Random(seed)
    X, y, tags = [], [], []
    for _ in range(n):
        forms, lemmas, upos = [], [], []
        for _ in range(rng.randint(2, 6)):
            stem = rng.choice(stems)
            kind = rng.choice(["NOUN", "NOUNS", "ING", "ED", "WENT"])
            form, tag = {"NOUN": (stem, "NOUN"), "NOUNS": (stem + "s", "NOUN"),
                         "ING": (stem + "ing", "VERB"), "ED": (stem + "ed", "VERB"),
                         "WENT": ("went", "VERB")}[kind]
            forms.append(form)
            upos.append(tag)
            lemmas.append("go" if form == "went" else stem)
        X.append(forms)
        y.append(lemmas)
        tags.append(upos)
    return X, y, tags


@pytest.fixture(scope="module")
def lemmatizer():
    X, y, tags = corpus(0, 400, STEMS[:300])
    X_dev, y_dev, tags_dev = corpus(1, 40, STEMS[300:320])
    model = Lemmatizer(hidden_size=32, embedding_dim=16, feature_dim=4, dropout=0.0,
                       learning_rate=0.005, lr_decay=0.1, max_epochs=40, patience=8,
                       random_state=0)
    return model.fit(X, y, tags, X_dev=X_dev, y_dev=y_dev, upos_dev=tags_dev)


def test_seen_pairs_come_from_the_dictionary(lemmatizer):
    assert lemmatizer.pair_lemmas_[("went", "VERB")] == "go"
    stem = STEMS[0]
    assert lemmatizer.pair_lemmas_[(stem + "s", "NOUN")] == stem
    assert lemmatizer.predict([["went", stem + "s"]], [["VERB", "NOUN"]]) == [["go", stem]]


def test_unseen_words_get_the_transducers_lemmas(lemmatizer):
    X, y, tags = corpus(2, 60, STEMS[320:])  # stems training never showed
    assert all(form not in {f for f, _ in lemmatizer.pair_lemmas_} or form == "went"
               for sentence in X for form in sentence)
    assert lemmatizer.score(X, y, tags) >= 0.95


def test_model_file_round_trip(lemmatizer, tmp_path):
    path = tmp_path / "lemma.tagger"
    lemmatizer.save(path)
    again = load(path)
    assert isinstance(again, Lemmatizer)
    assert again.pair_lemmas_ == lemmatizer.pair_lemmas_
    X, _, tags = corpus(3, 20, STEMS)
    assert again.predict(X, tags) == lemmatizer.predict(X, tags)


def test_bad_input_is_refused(lemmatizer):
    with pytest.raises(ValueError, match="trained with UPOS tags: pass upos"):
        lemmatizer.predict([["walks"]])
    with pytest.raises(ValueError, match=r"upos\[0\] must hold one non-empty tag per token"):
        lemmatizer.predict([["walks", "talked"]], [["NOUN"]])
    with pytest.raises(ValueError, match=r"y\[0\] must hold one non-empty lemma per token"):
        Lemmatizer(max_epochs=1).fit([["a", "b"]], [["a"]])
    with pytest.raises(TypeError, match="lists of sentences"):
        Lemmatizer(max_epochs=1).fit("walks", "walk")
    X, y, tags = corpus(4, 5, STEMS[:5])
    with pytest.raises(ValueError, match="pass upos_dev with X_dev"):
        Lemmatizer(max_epochs=1).fit(X, y, tags, X_dev=X, y_dev=y)
    with pytest.raises(NotImplementedError, match="call fit"):
        lemmatizer.partial_fit([["a"]], [["a"]])


def test_without_upos():
    X, y, _ = corpus(4, 30, STEMS[:5])
    model = Lemmatizer(hidden_size=16, embedding_dim=8, max_epochs=2, random_state=0).fit(X, y)
    assert model.predict([["went"]]) == [["go"]]  # from the dictionary
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two epochs: the end symbol may not come in time
        assert len(model.predict([["zzz"]])[0]) == 1


def test_the_lemma_is_the_most_probable_of_the_written_form_and_the_copies(lemmatizer,
                                                                          monkeypatch):
    """For an unseen pair: of the transducer's output, the form and the lowercased form, the
    one the transducer scores highest; an unfinished output is no candidate; with no candidate
    it can write, the form itself."""
    written = {"Abc": (list("xyz"), True), "DEF": (list("d"), True), "ghi": (list("gh"), False),
               "JKL": (list("q"), False)}

    def decode(X, features, beam_size, n_best=1, warn_cut=True):
        assert not warn_cut
        return [[(written[x][0], 0.0, written[x][1])] for x in X]

    scores = {("Abc", "xyz"): -1.0, ("Abc", "Abc"): -0.5, ("Abc", "abc"): -3.0,
              ("DEF", "d"): -4.0, ("DEF", "DEF"): -6.0, ("DEF", "def"): -2.0,
              ("ghi", "ghi"): -5.0}

    def log_probability(X, y, features=None):
        return np.array([scores.get((x, out), -np.inf) for x, out in zip(X, y, strict=True)])

    monkeypatch.setattr(lemmatizer, "_decode", decode)
    monkeypatch.setattr(lemmatizer, "log_probability", log_probability)
    forms = ["Abc", "DEF", "ghi", "JKL"]
    assert lemmatizer.predict([forms], [["NOUN"] * 4]) == [["Abc", "def", "ghi", "JKL"]]
    scores[("Abc", "xyz")] = -0.5  # a tie goes to the search's output
    assert lemmatizer.predict([["Abc"]], [["NOUN"]]) == [["xyz"]]


def test_a_form_too_long_for_the_transducer_is_its_own_lemma(lemmatizer):
    long = "ab" * lemmatizer.max_input_length_
    sentence = ["kats", long, "went"]
    upos = ["NOUN", "NOUN", "VERB"]
    with pytest.warns(UserWarning, match=r"1 form\(s\) longer than the transducer's "
                                         r"max_input_length_"):
        out = lemmatizer.predict([sentence], [upos])[0]
    assert out[1] == long
    assert [out[0], out[2]] == lemmatizer.predict([["kats", "went"]], [["NOUN", "VERB"]])[0]


def test_training_data_a_model_file_cannot_hold(tmp_path):
    X, y, tags = corpus(5, 20, STEMS[:5])
    url = "http://" + "x" * 1000
    X[0] = [*X[0], url]
    y[0] = [*y[0], url]
    tags[0] = [*tags[0], "X"]
    model = Lemmatizer(hidden_size=8, embedding_dim=4, feature_dim=2, max_epochs=1,
                       random_state=0)
    with pytest.warns(UserWarning, match="1 .form, lemma. pair.s. longer than 1000 characters "
                                         "are left out of training"):
        model.fit(X, y, tags)
    assert (url, "X") not in model.pair_lemmas_
    model.save(tmp_path / "lemma.tagger")  # and it loads: what fit keeps, the file holds
    assert load(tmp_path / "lemma.tagger").pair_lemmas_ == model.pair_lemmas_
    X, y, tags = corpus(5, 20, STEMS[:5])
    for form, lemma, what in (("zq", "g\to", "lemma"), ("zq", "g\u2028o", "lemma"),
                              ("z\rq", "zq", "form")):
        with pytest.raises(ValueError, match=f"a {what} holds a tab or a line break"):
            Lemmatizer(max_epochs=1).fit([*X, [form]], [*y, [lemma]], [*tags, ["NOUN"]])
    tags_bad = [list(row) for row in tags]
    tags_bad[1][0] = "T" * 101
    with pytest.raises(ValueError, match="a UPOS tag is longer than 100 characters"):
        Lemmatizer(max_epochs=1).fit(X, y, tags_bad)


def test_an_empty_search_output_is_never_a_lemma(lemmatizer, monkeypatch):
    form = STEMS[325] + "s"  # a pair training never showed
    monkeypatch.setattr(lemmatizer, "_decode",
                        lambda X, *args, **kwargs: [[([], -0.1, True)] for _ in X])
    assert lemmatizer.predict([[form, "Went"]], [["NOUN", "PROPN"]])[0][0] in (form,
                                                                               form.lower())
    assert all(lemma for lemma in lemmatizer.predict([[form, "Went"]], [["NOUN", "PROPN"]])[0])


def test_score_reads_generators(lemmatizer):
    X, y, tags = corpus(1, 10, STEMS[300:320])
    expected = lemmatizer.score(X, y, tags)
    assert lemmatizer.score(iter(X), iter(y), iter(tags)) == expected > 0.5
