"""The sample corpora of data/: exactly what data/make_samples.py writes, and readable by
tagger.io with well-formed tags and balanced labels."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from tagger.io import read_conll, read_tsv

DATA = Path(__file__).resolve().parents[1] / "data"
NER = {"train": DATA / "sample-ner" / "train.conll", "dev": DATA / "sample-ner" / "dev.conll"}
CLASSIFY = {
    "train": DATA / "sample-classify" / "train.tsv",
    "dev": DATA / "sample-classify" / "dev.tsv",
}
SIZES = {"train": 1500, "dev": 300}
TYPES = ("PER", "LOC", "ORG", "DATE")
GENERATED = [
    "sample-ner/train.conll",
    "sample-ner/dev.conll",
    "sample-classify/train.tsv",
    "sample-classify/dev.tsv",
]


def _load_generator() -> ModuleType:
    # data/ is not a package: import the script from its path.
    spec = importlib.util.spec_from_file_location("make_samples", DATA / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_what_the_generator_writes(tmp_path: Path, capsys) -> None:
    assert _load_generator().main(["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    for relative in GENERATED:
        assert (tmp_path / relative).read_bytes() == (DATA / relative).read_bytes(), (
            f"data/{relative} differs from the generator's output; "
            "rerun python data/make_samples.py"
        )
        assert relative in printed
    # Nothing else is written.
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(GENERATED)


def test_another_seed_gives_other_files(tmp_path: Path) -> None:
    _load_generator().main(["--out", str(tmp_path), "--seed", "7"])
    assert (tmp_path / GENERATED[0]).read_bytes() != (DATA / GENERATED[0]).read_bytes()


@pytest.mark.parametrize("split", ["train", "dev"])
def test_ner_files_parse_with_well_formed_iob2(split: str) -> None:
    sentences = list(read_conll(NER[split]))
    assert len(sentences) == SIZES[split]
    allowed = {"O"} | {f"{prefix}-{kind}" for prefix in "BI" for kind in TYPES}
    types_seen: Counter[str] = Counter()
    for sentence in sentences:
        assert sentence.tags is not None and sentence.tokens
        previous = "O"
        for tag in sentence.tags:
            assert tag in allowed, (sentence.line, tag)
            # IOB2: an I-X continues a B-X or I-X, never starts an entity.
            if tag.startswith("I-"):
                assert previous[2:] == tag[2:], (sentence.line, sentence.tags)
            if tag.startswith("B-"):
                types_seen[tag[2:]] += 1
            previous = tag
    assert set(types_seen) == set(TYPES)
    # Some sentences have no entity at all.
    assert any(set(s.tags) == {"O"} for s in sentences)


def test_ner_dev_has_people_unseen_in_train() -> None:
    train_tokens = {token for s in read_conll(NER["train"]) for token in s.tokens}
    unseen = {
        token
        for s in read_conll(NER["dev"])
        for token, tag in zip(s.tokens, s.tags, strict=True)
        if tag.endswith("-PER") and token not in train_tokens
    }
    assert len(unseen) >= 5, unseen


@pytest.mark.parametrize("split", ["train", "dev"])
def test_classify_files_parse_with_balanced_labels(split: str) -> None:
    texts = list(read_tsv(CLASSIFY[split]))
    assert len(texts) == SIZES[split]
    labels = Counter(text.label for text in texts)
    assert set(labels) == {"positive", "negative"}
    for count in labels.values():
        assert 0.35 <= count / len(texts) <= 0.65, labels
    # Lowercase, single spaces, punctuation split off: the raw text is the tokens joined by " ".
    lines = CLASSIFY[split].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "label\ttext"
    for text, line in zip(texts, lines[1:], strict=True):
        assert line.split("\t")[1] == " ".join(text.tokens)
        assert all(token.islower() or not token.isalpha() for token in text.tokens), line
