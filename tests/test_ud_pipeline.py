"""A UPOS tagger and a lemmatizer chained: ``tagger predict UPOS_MODEL --lemmatizer LEMMA_MODEL``
writes CoNLL-U with UPOS and LEMMA filled and every other line and column kept; raw text and
JSONL work too, and tag_stream takes the lemmatizer from Python."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_lemmatizer import STEMS, corpus
from typer.testing import CliRunner

from tagger import Lemmatizer, SequenceTagger
from tagger.cli import app
from tagger.stream import tag_stream

WIDE = {"COLUMNS": "220", "TERMINAL_WIDTH": "220"}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env=WIDE, prog_name="tagger")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ud")
    X, y, tags = corpus(0, 300, STEMS[:200])
    tagger = SequenceTagger(hidden_size=16, word_dim=16, char_dim=8, char_hidden_size=8,
                            max_epochs=3, random_state=0).fit(X, tags)
    lemmatizer = Lemmatizer(hidden_size=24, embedding_dim=12, feature_dim=4, dropout=0.0,
                            learning_rate=0.005, max_epochs=6, random_state=0).fit(X, y, tags)
    tagger.save(folder / "pos.tagger")
    lemmatizer.save(folder / "lemma.tagger")
    return folder, tagger, lemmatizer


CONLLU = """# sent_id = a1
# text = went dogs
1-2\twentdogs\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No
1\twent\t_\tX\tXP\tTense=Past\t0\troot\t_\t_
2\t{w2}\t_\t_\t_\t_\t1\tobj\t_\tNote=kept

# sent_id = a2
1\t{w3}\tOLD\tX\t_\t_\t0\troot\t_\t_

"""


def expected(tagger, lemmatizer, sentences):
    tags = tagger.predict(sentences)
    return tags, lemmatizer.predict(sentences, tags)


def test_conllu_in_conllu_out_fills_upos_and_lemma_and_keeps_the_rest(models, tmp_path):
    folder, tagger, lemmatizer = models
    w2, w3 = STEMS[1] + "s", STEMS[250] + "ing"
    source = tmp_path / "in.conllu"
    source.write_text(CONLLU.format(w2=w2, w3=w3), encoding="utf-8")
    result = invoke("predict", folder / "pos.tagger", source, "--lemmatizer",
                    folder / "lemma.tagger")
    assert result.exit_code == 0, result.output
    tags, lemmas = expected(tagger, lemmatizer, [["went", w2], [w3]])
    lines = result.stdout.split("\n")
    assert lines[:3] == ["# sent_id = a1", "# text = went dogs",
                         "1-2\twentdogs\t_\t_\t_\t_\t_\t_\t_\tSpaceAfter=No"]
    first = lines[3].split("\t")
    assert first[1:4] == ["went", lemmas[0][0], tags[0][0]]
    assert first[4:] == ["XP", "Tense=Past", "0", "root", "_", "_"]
    second = lines[4].split("\t")
    assert second[2:4] == [lemmas[0][1], tags[0][1]] and second[9] == "Note=kept"
    third = lines[7].split("\t")
    assert lines[6] == "# sent_id = a2" and third[2:4] == [lemmas[1][0], tags[1][0]]
    assert lemmas[0][0] == "go"  # from the lemmatizer's dictionary


def test_raw_text_and_jsonl(models, tmp_path):
    folder, tagger, lemmatizer = models
    words = ["went", STEMS[3] + "ed"]
    text = tmp_path / "in.txt"
    text.write_text(" ".join(words) + "\n", encoding="utf-8")
    result = invoke("predict", folder / "pos.tagger", text, "--lemmatizer",
                    folder / "lemma.tagger", "--output-format", "conllu")
    assert result.exit_code == 0, result.output
    tags, lemmas = expected(tagger, lemmatizer, [words])
    rows = [line.split("\t") for line in result.stdout.split("\n") if line[:1].isdigit()]
    assert [r[2] for r in rows] == lemmas[0] and [r[3] for r in rows] == tags[0]
    result = invoke("predict", folder / "pos.tagger", text, "--lemmatizer",
                    folder / "lemma.tagger", "--output-format", "jsonl")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["pred_lemmas"] == lemmas[0] and record["pred_tags"] == tags[0]


def test_conll_output_keeps_the_tag_before_the_lemma_on_every_path(models, tmp_path):
    # A no-break space in a FORM is legal CoNLL-U; CoNLL output then goes through the checked
    # writer, which must write the same columns as the fast path: the tag, then the lemma.
    folder, tagger, lemmatizer = models
    source = tmp_path / "in.conllu"
    for form in (STEMS[1] + "s", "10\u00a0000"):
        source.write_text(f"1\twent\t_\t_\t_\t_\t0\troot\t_\t_\n"
                          f"2\t{form}\t_\t_\t_\t_\t1\tobj\t_\t_\n\n", encoding="utf-8")
        result = invoke("predict", folder / "pos.tagger", source, "--lemmatizer",
                        folder / "lemma.tagger", "--output-format", "conll")
        assert result.exit_code == 0, result.output
        tags, lemmas = expected(tagger, lemmatizer, [["went", form]])
        rows = [line.split("\t") for line in result.stdout.strip().split("\n")]
        assert [len(r) for r in rows] == [12, 12]
        assert [r[10] for r in rows] == tags[0] and [r[11] for r in rows] == lemmas[0]
        assert all(lemmas[0])


def test_tag_stream_takes_the_lemmatizer(models):
    _, tagger, lemmatizer = models
    items = [["went", STEMS[5]], [STEMS[6] + "s"]]
    results = list(tag_stream(tagger, items, lemmatizer=lemmatizer))
    tags, lemmas = expected(tagger, lemmatizer, items)
    assert [r["lemmas"] for r in results] == lemmas
    assert [r["tags"] for r in results] == tags


def test_refusals(models, tmp_path):
    folder, _, _ = models
    text = tmp_path / "in.txt"
    text.write_text("went\n", encoding="utf-8")
    result = invoke("predict", folder / "pos.tagger", text, "--lemmatizer",
                    folder / "pos.tagger")
    assert result.exit_code == 1 and "must be a Lemmatizer model" in result.output
    result = invoke("predict", folder / "lemma.tagger", text)
    assert result.exit_code == 1 and "--lemmatizer LEMMA_MODEL" in result.output
    result = invoke("predict", folder / "pos.tagger", text, "--lemmatizer",
                    folder / "lemma.tagger", "--output-format", "html")
    assert result.exit_code == 1 and "not html" in result.output
    assert "Traceback" not in result.output


def test_info_describes_a_lemmatizer(models):
    folder, _, lemmatizer = models
    result = invoke("info", folder / "lemma.tagger")
    assert result.exit_code == 0, result.output
    assert "Lemmatizer" in result.output
    assert f"{len(lemmatizer.pair_lemmas_):,} (form, UPOS) pairs" in result.output
    assert "features               1 (values: 2)" in result.output


@pytest.mark.parametrize("row, match", [
    (["went", "VERB", "g\to"], "without tabs or line breaks"),
    (["went\n", "VERB", "go"], "without tabs or line breaks"),
    (["went", None, "go"], "tag must be a short string"),
    (["went", "VERB"], r"\[form, tag, lemma\]"),
    (["went", "VERB", "g\u2028o"], "without tabs or line breaks"),
])
def test_a_hostile_lemmatizer_dictionary_is_refused_at_load(models, tmp_path, row, match):
    from test_model_file_attacks import assert_one_line, read_model, write_model

    from tagger import load
    from tagger.errors import ModelFileError

    folder, _, _ = models
    config, arrays = read_model(folder / "lemma.tagger")
    config["pair_lemmas"] = [row] + config["pair_lemmas"][1:]
    path = tmp_path / "bad.tagger"
    write_model(path, config, arrays)
    with pytest.raises(ModelFileError, match=match) as caught:
        load(path)
    assert_one_line(caught.value, path)


@pytest.mark.parametrize("key", ["input_type", "target_type"])
def test_a_lemmatizer_of_token_sequences_is_refused_at_load(models, tmp_path, key):
    from test_model_file_attacks import assert_one_line, read_model, write_model

    from tagger import load
    from tagger.errors import ModelFileError

    folder, _, _ = models
    config, arrays = read_model(folder / "lemma.tagger")
    config[key] = "symbols"
    path = tmp_path / "bad.tagger"
    write_model(path, config, arrays)
    with pytest.raises(ModelFileError, match="must read and write strings") as caught:
        load(path)
    assert_one_line(caught.value, path)


def _with_a_second_feature(config, arrays):
    """The lemmatizer's transducer given a second feature vocabulary, its weights resized to
    match: a consistent transducer whose features no longer say "the UPOS"."""
    width = arrays["feat.0.emb"].shape[1]
    config["feature_vocabularies"].append({"items": ["A", "B"], "counts": [3, 2]})
    arrays["feat.1.emb"] = np.zeros((arrays["feat.0.emb"].shape[0], width), np.float32)
    for name in ("enc.0.fwd.W", "enc.0.bwd.W"):
        grown = np.zeros((arrays[name].shape[0] + width, arrays[name].shape[1]), np.float32)
        grown[:arrays[name].shape[0]] = arrays[name]
        arrays[name] = grown


@pytest.mark.parametrize("change", ["two features", "one feature, uses_upos false",
                                    "no feature, uses_upos true"])
def test_a_lemmatizer_whose_features_are_not_the_upos_is_refused_at_load(models, tmp_path,
                                                                          change):
    from test_model_file_attacks import assert_one_line, read_model, write_model

    from tagger import SequenceTransducer, load
    from tagger.errors import ModelFileError

    folder, _, _ = models
    config, arrays = read_model(folder / "lemma.tagger")
    if change == "two features":
        _with_a_second_feature(config, arrays)
    elif change == "one feature, uses_upos false":
        config["uses_upos"] = False
    else:
        width = arrays.pop("feat.0.emb").shape[1]
        config["feature_vocabularies"] = []
        for name in ("enc.0.fwd.W", "enc.0.bwd.W"):
            arrays[name] = arrays[name][:-width]
    # The transducer inside is a sound one: as a SequenceTransducer the same file loads.
    plain = {k: v for k, v in config.items() if k not in ("uses_upos", "pair_lemmas")}
    plain["kind"] = "SequenceTransducer"
    write_model(tmp_path / "plain.tagger", plain, arrays)
    assert isinstance(load(tmp_path / "plain.tagger"), SequenceTransducer)

    path = tmp_path / "bad.tagger"
    write_model(path, config, arrays)
    with pytest.raises(ModelFileError, match="uses_upos must be true exactly when") as caught:
        load(path)
    assert_one_line(caught.value, path)
