"""Lemmatizer: what training shows, then an encoder–decoder for the rest (as Stanza does)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np

from ._inputs import LINE_OR_TAB, MAX_DICTIONARY_ENTRY, MAX_DICTIONARY_TAG
from ._protocol import check_is_fitted
from .transducer import SequenceTransducer

_KIND = "Lemmatizer"


class Lemmatizer(SequenceTransducer):
    """Lemmas of the words of tagged sentences.

    A word whose (form, UPOS) pair training showed gets the lemma it had most often there.
    Every other word goes to a character-level :class:`SequenceTransducer` trained on the
    distinct (form, UPOS) → lemma pairs of the training data, the UPOS tag as its feature: it
    writes the lemma character by character (suffixes stripped, irregular forms, copies of
    names and numbers), and of what it wrote, the form and the lowercased form, the lemma is
    the one it scores most probable (see :meth:`_write`).

    Parameters are those of :class:`SequenceTransducer`, for its transducer.

    Attributes
    ----------
    pair_lemmas_ : dict
        (form, UPOS) → lemma: the most frequent lemma of each pair in training (ties to the
        lemma seen first).
    """

    _kind = _KIND

    @staticmethod
    def _tokens(X, tags, name: str, tags_name: str) -> list[tuple[str, str | None]]:
        """The (form, tag) pairs of sentences ``X`` (lists of tokens) in order."""
        if isinstance(X, str):
            raise TypeError(f"{name} must be a list of sentences (lists of tokens)")
        sentences = list(X)
        tag_rows = None if tags is None else list(tags)
        if tag_rows is not None and len(tag_rows) != len(sentences):
            raise ValueError(f"{tags_name} has {len(tag_rows)} sentences, {name} "
                             f"{len(sentences)}")
        pairs = []
        for i, sentence in enumerate(sentences):
            if isinstance(sentence, str) or not all(isinstance(t, str) and t
                                                    for t in sentence):
                raise TypeError(f"{name}[{i}] must be a list of non-empty strings (tokens)")
            row = None if tag_rows is None else list(tag_rows[i])
            if row is not None and (len(row) != len(sentence) or not all(
                    isinstance(t, str) and t for t in row)):
                raise ValueError(f"{tags_name}[{i}] must hold one non-empty tag per token of "
                                 f"{name}[{i}]")
            pairs.extend(zip(sentence, row if row is not None else [None] * len(sentence),
                             strict=True))
        return pairs

    @staticmethod
    def _lemma_rows(y, X) -> list[str]:
        lemmas = []
        for i, (row, sentence) in enumerate(zip(y, X, strict=True)):
            row = list(row)
            if len(row) != len(sentence) or not all(isinstance(t, str) and t for t in row):
                raise ValueError(f"y[{i}] must hold one non-empty lemma per token of X[{i}]")
            lemmas.extend(row)
        return lemmas

    def fit(self, X, y, upos=None, X_dev=None, y_dev=None, upos_dev=None, callback=None):
        """Learn from tagged sentences.

        Parameters
        ----------
        X : list of lists of str
            Sentences (their tokens' forms).
        y : list of lists of str
            The lemma of every token.
        upos : list of lists of str, optional
            The UPOS tag of every token (then also required by :meth:`predict`).
        X_dev, y_dev, upos_dev : optional
            Development sentences: the transducer's early stopping reads their pairs that
            training did not show.
        callback : callable, optional
            Passed to :meth:`SequenceTransducer.fit`.

        Returns
        -------
        self
        """
        if isinstance(X, str) or isinstance(y, str):
            raise TypeError("X and y must be lists of sentences (lists of tokens)")
        X, y = list(X), list(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} sentences, y {len(y)}")
        tokens = self._tokens(X, upos, "X", "upos")
        lemmas = self._lemma_rows(y, X)
        if not tokens:
            raise ValueError("X holds no tokens to learn from")
        counts: dict[tuple, Counter] = {}
        for pair, lemma in zip(tokens, lemmas, strict=True):
            counts.setdefault(pair, Counter())[lemma] += 1
        pair_lemmas = {pair: c.most_common(1)[0][0] for pair, c in counts.items()}
        pair_lemmas = _storable(pair_lemmas)
        words = [form for form, _ in pair_lemmas]
        targets = list(pair_lemmas.values())
        tags = None if upos is None else [tag for _, tag in pair_lemmas]
        dev = {}
        if X_dev is not None or y_dev is not None:
            if X_dev is None or y_dev is None:
                raise ValueError("give both X_dev and y_dev, or neither")
            if upos is not None and upos_dev is None:
                raise ValueError("the lemmatizer is trained with UPOS tags: pass upos_dev with "
                                 "X_dev")
            X_dev, y_dev = list(X_dev), list(y_dev)
            dev_tokens = self._tokens(X_dev, upos_dev if upos is not None else None, "X_dev",
                                      "upos_dev")
            dev_lemmas = self._lemma_rows(y_dev, X_dev)
            unseen = {pair: lemma for pair, lemma in zip(dev_tokens, dev_lemmas, strict=True)
                      if pair not in pair_lemmas}
            if unseen:
                dev = {"X_dev": [form for form, _ in unseen], "y_dev": list(unseen.values()),
                       "features_dev": None if upos is None else [t for _, t in unseen]}
        super().fit(words, targets, features=tags, callback=callback, **dev)
        self.pair_lemmas_ = pair_lemmas
        self.uses_upos_ = upos is not None
        return self

    def partial_fit(self, *args, **kwargs):
        raise NotImplementedError("a Lemmatizer is fitted in one go: call fit")

    def predict(self, X, upos=None) -> list[list[str]]:
        """The lemma of every token of every sentence."""
        check_is_fitted(self, "pair_lemmas_")
        if self.uses_upos_ and upos is None:
            raise ValueError("this lemmatizer was trained with UPOS tags: pass upos")
        X = list(X)
        tokens = self._tokens(X, upos if self.uses_upos_ else None, "X", "upos")
        unseen = list(dict.fromkeys(pair for pair in tokens if pair not in self.pair_lemmas_))
        written = dict(zip(unseen, self._write(unseen), strict=True)) if unseen else {}
        flat = [self.pair_lemmas_.get(pair) or written[pair] for pair in tokens]
        out, k = [], 0
        for sentence in X:
            out.append(flat[k:k + len(sentence)])
            k += len(sentence)
        return out

    def _write(self, pairs: list[tuple[str, str | None]]) -> list[str]:
        """Lemmas of (form, tag) pairs training did not show: of the transducer's output (by
        beam search, or greedy), the form itself and the form lowercased, the one the
        transducer finds most probable.

        Decoding is a search for the most probable output, and greedy or beam search can miss
        it: on long or repetitive forms (URLs, ``-----``, ``??????``) and on names written in
        capitals the transducer's own scores prefer the copy it failed to write (UD EWT dev
        with gold UPOS: 97.96 → 98.20, ``benchmarks/bench_lemma.py``). An output the search
        could not finish within ``max_output_length``, or an empty one, is not a candidate;
        when no candidate can be written with the transducer's symbols, the form is its own
        lemma.
        """
        limit = self.max_input_length_
        long = [i for i, (form, _) in enumerate(pairs) if len(form) > limit]
        if long:
            # A form the encoder was not sized for (a pasted URL, a run of symbols) is its
            # own lemma, as for a form no candidate can be written for.
            warnings.warn(f"{len(long)} form(s) longer than the transducer's "
                          f"max_input_length_ of {limit:,} characters (the first: "
                          f"{pairs[long[0]][0][:40]!r}...) are their own lemmas", UserWarning,
                          stacklevel=3)
            keep = [i for i in range(len(pairs)) if len(pairs[i][0]) <= limit]
            out = [form for form, _ in pairs]
            for i, lemma in zip(keep, self._write([pairs[i] for i in keep]) if keep else [],
                                strict=True):
                out[i] = lemma
            return out
        forms = [form for form, _ in pairs]
        tags = [tag for _, tag in pairs] if self.uses_upos_ else None
        decoded = self._decode(forms, tags, self.beam_size, warn_cut=False)
        # (example, candidate) in order of preference on ties: the search's, the form, lowercase.
        rows, texts = [], []
        for i, (hyps, form) in enumerate(zip(decoded, forms, strict=True)):
            symbols, _, finished = hyps[0]
            # An empty output is never a lemma (training refuses empty ones): the form and
            # its lowercase stay the candidates then.
            searched = ["".join(symbols)] if finished and symbols else []
            for text in dict.fromkeys([*searched, form, form.lower()]):
                rows.append(i)
                texts.append(text)
        scores = self.log_probability([forms[i] for i in rows], texts,
                                      None if tags is None else [tags[i] for i in rows])
        out = list(forms)  # no candidate the transducer can write: the form is its own lemma
        best = np.full(len(forms), -np.inf)
        for i, text, score in zip(rows, texts, scores, strict=True):
            if score > best[i]:
                best[i], out[i] = score, text
        return out

    def score(self, X, y, upos=None) -> float:
        """Token accuracy of :meth:`predict`."""
        X = list(X)  # read twice: by predict and for the gold rows
        if upos is not None:
            upos = list(upos)
        predicted = self.predict(X, upos)
        gold = self._lemma_rows(y, X)
        flat = [lemma for row in predicted for lemma in row]
        return sum(a == b for a, b in zip(flat, gold, strict=True)) / max(len(gold), 1)

    # ------------------------------------------------------------------------------------------
    # model files
    # ------------------------------------------------------------------------------------------

    def _task_config(self) -> dict:
        config = super()._task_config()
        config["uses_upos"] = self.uses_upos_
        config["pair_lemmas"] = [[form, tag, lemma] for (form, tag), lemma
                                 in self.pair_lemmas_.items()]
        return config

    def _restore_task(self, config: dict) -> None:
        from ._modelfile import restore_lemmatizer

        super()._restore_task(config)
        restore_lemmatizer(self, config)


def _storable(pair_lemmas: dict) -> dict:
    """The training dictionary as a model file can hold it: a form, tag or lemma with a tab or
    a line break is refused (no CoNLL-U file holds one); a form or lemma over
    ``MAX_DICTIONARY_ENTRY`` characters (a pasted URL, say) is left out, with a warning: such
    a form is its own lemma at prediction time."""
    out = {}
    long = 0
    for (form, tag), lemma in pair_lemmas.items():
        for value, name in ((form, "form"), (lemma, "lemma"), (tag, "UPOS tag")):
            if value is not None and LINE_OR_TAB.search(value):
                raise ValueError(f"a {name} holds a tab or a line break: {value[:40]!r}")
        if tag is not None and len(tag) > MAX_DICTIONARY_TAG:
            raise ValueError(f"a UPOS tag is longer than {MAX_DICTIONARY_TAG} characters: "
                             f"{tag[:40]!r}...")
        if len(form) > MAX_DICTIONARY_ENTRY or len(lemma) > MAX_DICTIONARY_ENTRY:
            long += 1
            continue
        out[(form, tag)] = lemma
    if long:
        warnings.warn(f"{long} (form, lemma) pair(s) longer than {MAX_DICTIONARY_ENTRY} "
                      f"characters are left out of training", UserWarning, stacklevel=3)
    if not out:
        raise ValueError("X holds no tokens to learn from")
    return out
