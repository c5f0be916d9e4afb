"""A transducer's model file from a stranger: every value of its own config (target type and
vocabulary, feature vocabularies, the output limit, widths and beam) is checked before anything
is allocated, and a bad one is one ModelFileError line naming the file."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from test_model_file_attacks import _set, assert_one_line, read_model, write_model

import tagger
from tagger import SequenceTransducer
from tagger.errors import ModelFileError


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("transducer") / "t.tagger"
    model = SequenceTransducer(hidden_size=8, embedding_dim=4, feature_dim=3, max_epochs=1,
                               random_state=0)
    model.fit(["abc", "bca", "cab"], ["xy", "yx", "xx"], features=["N", "V", "N"])
    model.save(path)
    return path


@pytest.mark.parametrize(("changes", "match"), [
    ({"params.feature_dim": 10**9}, "feature_dim is 1000000000, outside"),
    ({"params.hidden_size": 10**9}, "hidden_size is 1000000000, outside"),
    ({"params.beam_size": 10**9}, "beam_size is 1000000000, outside"),
    ({"max_output_length": 10**12}, "max_output_length is 1000000000000, outside"),
    ({"max_input_length": 10**12}, "max_input_length is 1000000000000, outside"),
    ({"params.max_output_length": -5}, "max_output_length"),
    ({"params.length_penalty": "big"}, "length_penalty"),
    ({"target_type": "pixels"}, "target_type must be"),
    ({"target_vocabulary": {"items": ["xy", "z"], "counts": [1, 1]}}, "single characters"),
    ({"target_vocabulary": {"items": [], "counts": []}}, "target_vocabulary is empty"),
    ({"target_vocabulary": {"items": ["x", "y", "z"], "counts": [1, 1, 1]}},
     r"has shape .* expected"),
    ({"feature_vocabularies": "N"}, "feature_vocabularies must be a list"),
    ({"feature_vocabularies": [{"items": ["N"], "counts": [1]}] * 65},
     "feature_vocabularies must be a list of at most 64"),
    ({"feature_vocabularies": [{"items": ["N", "N"], "counts": [1, 1]}]}, "duplicate"),
    ({"feature_vocabularies": []}, "missing arrays|unexpected arrays"),
    ({"params.cell": "gru"}, "cell must be one of lstm"),
], ids=["feature_dim", "hidden", "beam", "output", "input", "param-output", "penalty",
        "target-type", "multichar", "empty-target", "target-shape", "features-type",
        "features-many", "features-dup", "features-none", "cell"])
def test_a_hostile_transducer_config_is_one_clear_error(model_file, tmp_path, changes, match):
    config, arrays = read_model(model_file)
    for dotted, value in changes.items():
        _set(config, dotted, value)
    path = tmp_path / "bad.tagger"
    write_model(path, config, arrays)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ModelFileError, match=match) as caught:
            tagger.load(path)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line(caught.value, path)
    assert seconds < 2 and peak < 16 * 2**20, (seconds, peak)


def test_the_untouched_file_loads_and_predicts(model_file):
    import warnings

    model = tagger.load(model_file)
    assert isinstance(model, SequenceTransducer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-epoch model may not write its end symbol
        assert len(model.predict(["abc"], features=["N"])) == 1


def test_a_file_without_the_source_limit_gets_one_in_scale_with_its_outputs(model_file,
                                                                              tmp_path):
    config, arrays = read_model(model_file)
    assert config["max_input_length"] == 4 * 3 + 16
    del config["max_input_length"]
    path = tmp_path / "older.tagger"
    write_model(path, config, arrays)
    model = tagger.load(path)
    assert model.max_output_length_ == 2 * 2 + 10
    assert model.max_input_length_ == 4 * model.max_output_length_ + 16


@pytest.mark.parametrize("changes, match", [
    ({"params.beam_size": 1000, "max_output_length": 100_000},
     "beam_size x max_output_length must be at most 1,000,000"),
    ({"params.beam_size": 1000, "max_input_length": 100_000},
     "beam_size x max_input_length x 2 hidden_size must be at most"),
])
def test_search_sizes_whose_products_are_too_large_are_refused(tmp_path, changes, match):
    # Each value within its own limit, their product not: the search would run for hours or
    # allocate gigabytes.
    model = SequenceTransducer(hidden_size=8, embedding_dim=4, max_epochs=1, random_state=0)
    model.fit(["ab", "ba"], ["ba", "ab"]).save(tmp_path / "ok.tagger")
    config, arrays = read_model(tmp_path / "ok.tagger")
    for key, value in changes.items():
        if key.startswith("params."):
            config["params"][key[len("params."):]] = value
        else:
            config[key] = value
    write_model(tmp_path / "bad.tagger", config, arrays)
    with pytest.raises(ModelFileError, match=match) as caught:
        tagger.load(tmp_path / "bad.tagger")
    assert_one_line(caught.value, tmp_path / "bad.tagger")
    with pytest.raises(ValueError, match="beam_size x max_output_length"):
        SequenceTransducer(hidden_size=8, embedding_dim=4, max_epochs=1, beam_size=1000,
                           max_output_length=100_000).fit(["ab"], ["ba"])
