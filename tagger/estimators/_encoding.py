"""Sentences of tokens → padded id arrays for the network (a :class:`TokenBatch`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..nn.features import TokenBatch
from ..text.vocab import Vocabulary, clip_word, word_shape


class SentenceEncoder:
    """Encodes token lists with fixed vocabularies.

    Parameters
    ----------
    words : Vocabulary
        Word vocabulary (of lowercased words when ``lowercase``).
    chars : Vocabulary or None
        Character vocabulary (None without a character encoder).
    lowercase : bool
        Look words up in lower case (capitalisation then reaches the network through the shape
        feature and the characters).
    max_word_chars : int
        Characters per word given to the character encoder (see :func:`clip_word`).
    keep_tokens : bool
        Keep the sentences in each batch (``TokenBatch.tokens``), for features computed from
        their text.
    longest_words_first : bool
        Order a batch's distinct words (the rows of ``TokenBatch.char_ids``) by length, longest
        first, instead of by first appearance. A character LSTM then runs each step on the
        words still going only (its kernels shrink the batch to the rows still running), not
        on every word up to the longest one: on tweets, whose batches hold a long URL or
        hashtag, most of its work was padding.
    """

    def __init__(self, words: Vocabulary, chars: Vocabulary | None, lowercase: bool,
                 max_word_chars: int = 30, keep_tokens: bool = False,
                 longest_words_first: bool = False):
        self.words = words
        self.longest_words_first = longest_words_first
        self.chars = chars
        self.lowercase = lowercase
        self.keep_tokens = keep_tokens
        self.max_word_chars = max_word_chars
        self._char_cache: dict[str, np.ndarray] = {}
        self._token_cache: dict[str, tuple[int, int]] = {}
        counts = np.asarray(words.counts, dtype=np.float64)
        self._counts = counts

    def word_key(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    def encode(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Word ids and shape ids of one sentence."""
        pairs = self._token_ids(tokens)
        words = np.fromiter((w for w, _ in pairs), dtype=np.int64, count=len(pairs))
        shapes = np.fromiter((s for _, s in pairs), dtype=np.int64, count=len(pairs))
        return words, shapes

    def _token_ids(self, tokens: Sequence[str]) -> list[tuple[int, int]]:
        """(word id, shape id) of each token, remembered per distinct token: text repeats its
        words, and the shape's character tests cost more than a dictionary lookup."""
        cache = self._token_cache
        out = []
        for token in tokens:
            pair = cache.get(token)
            if pair is None:
                pair = (self.words.index(self.word_key(token)), word_shape(token))
                if len(cache) < 1_000_000:  # bounded: prediction streams may be endless
                    cache[token] = pair
            out.append(pair)
        return out

    def _char_ids(self, token: str) -> np.ndarray:
        ids = self._char_cache.get(token)
        if ids is None:
            ids = self.chars.encode(list(clip_word(token, self.max_word_chars)))
            if len(self._char_cache) < 1_000_000:  # bounded: prediction streams may be endless
                self._char_cache[token] = ids
        return ids

    def batch(self, sentences: Sequence[Sequence[str]], encoded=None,
              rng: np.random.Generator | None = None, unk_alpha: float = 0.0) -> TokenBatch:
        """Pad a list of sentences into a :class:`TokenBatch`.

        Parameters
        ----------
        sentences : sequence of token lists
            The batch.
        encoded : list of (word_ids, shape_ids), optional
            Precomputed :meth:`encode` of the same sentences.
        rng : numpy.random.Generator, optional
            Given with ``unk_alpha`` > 0 during training: word dropout replaces a word by the
            unknown id with probability ``alpha / (alpha + count)`` (Kiperwasser & Goldberg 2016),
            so that the network learns to use the character and shape features for rare words.
        unk_alpha : float
            The ``alpha`` above; 0 disables word dropout.
        """
        B = len(sentences)
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        T = int(lengths.max()) if B else 0
        # Valid positions in row-major order are the tokens in reading order.
        valid = np.arange(T) < lengths[:, None]
        word_ids = np.zeros((B, T), np.int64)
        shape_ids = np.zeros((B, T), np.int64)
        if encoded is None:
            pairs = self._token_ids([token for tokens in sentences for token in tokens])
            if pairs:
                flat = np.array(pairs, dtype=np.int64)
                word_ids[valid] = flat[:, 0]
                shape_ids[valid] = flat[:, 1]
        else:
            for b, (w, s) in enumerate(encoded):
                word_ids[b, : len(w)] = w
                shape_ids[b, : len(s)] = s
        if rng is not None and unk_alpha > 0:
            counts = self._counts[word_ids]
            drop = rng.random(word_ids.shape) < unk_alpha / (unk_alpha + counts)
            word_ids[drop & (word_ids > 1)] = 1
        word_slots = np.full((B, T), -1, np.int64)
        kept = [list(s) for s in sentences] if self.keep_tokens else None
        if self.chars is None:
            return TokenBatch(word_ids, shape_ids, lengths, word_slots,
                              np.zeros((0, 1), np.int64), np.zeros(0, np.int64), kept)
        slot_of: dict[str, int] = {}
        slots = []
        for tokens in sentences:
            for token in tokens:
                slot = slot_of.get(token)
                if slot is None:
                    slot = slot_of[token] = len(slot_of)
                slots.append(slot)
        char_lists = [self._char_ids(token) for token in slot_of]
        char_lengths = np.array([len(c) for c in char_lists], dtype=np.int64)
        if self.longest_words_first and len(char_lists) > 1:
            order = np.argsort(-char_lengths, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            slots = rank[np.array(slots, dtype=np.int64)]
            char_lists = [char_lists[u] for u in order.tolist()]
            char_lengths = char_lengths[order]
        word_slots[valid] = slots
        char_ids = np.zeros((len(char_lists), max(int(char_lengths.max(initial=0)), 1)), np.int64)
        for u, ids in enumerate(char_lists):
            char_ids[u, : len(ids)] = ids
        return TokenBatch(word_ids, shape_ids, lengths, word_slots, char_ids, char_lengths,
                          kept)
