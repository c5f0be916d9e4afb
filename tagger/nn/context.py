"""Contextual character embeddings (Akbik, Blythe & Vollgraf 2018): per-token features from a
forward and a backward character language model run over the sentence's text.

A sentence's tokens are joined by spaces into a text that starts with a newline and ends with a
space, as the language models saw text in training (every line starts after a newline). The
forward model reads it from the left: a token's feature is the model's top-layer state after
the token's last character. The backward model reads it from the right: its state after the
token's first character (the last one it reads of the token). Both see the whole sentence around
the token: the forward state holds everything to its left, the backward one everything to its
right. The two states are concatenated; the models are frozen (no gradient reaches them).
"""

from __future__ import annotations

import numpy as np

from .language_model import CharLMNetwork

#: Where a sentence's text starts (as the language models' training lines do) and what follows
#: its last token.
START, END = "\n", " "
_UNKNOWN = 1  # the character vocabularies' unknown id


class CharLMFeatures:
    """Per-token states of a forward and a backward character language model.

    Parameters
    ----------
    forward, backward : CharLMNetwork
        The two language models' networks (reading left to right, and right to left).
    forward_chars, backward_chars : sequence of str
        Each model's character vocabulary in id order (its padding and unknown entries
        included: characters not in it are read as unknown).
    prefix : str
        Their parameters are ``{prefix}fwd.<name>`` and ``{prefix}bwd.<name>`` in the
        parameter dict (where the tagger's model file keeps them).
    """

    def __init__(self, forward: CharLMNetwork, backward: CharLMNetwork,
                 forward_chars, backward_chars, prefix: str = "char_lm."):
        self.networks = {"fwd": forward, "bwd": backward}
        self.chars = {"fwd": {c: i for i, c in enumerate(forward_chars)},
                      "bwd": {c: i for i, c in enumerate(backward_chars)}}
        self.prefix = prefix
        self.output_size = forward.hidden_size + backward.hidden_size

    def param_shapes(self) -> dict[str, tuple]:
        """The two networks' parameters, under their prefixes."""
        return {f"{self.prefix}{side}.{name}": shape for side, network in self.networks.items()
                for name, shape in network.param_shapes().items()}

    def _side_params(self, params: dict, side: str) -> dict:
        key = f"{self.prefix}{side}."
        return {name[len(key):]: value for name, value in params.items()
                if name.startswith(key)}

    @staticmethod
    def layout(tokens) -> tuple[str, list[int], list[int]]:
        """A sentence's text and where each token starts and ends in it (end exclusive)."""
        starts, ends, position = [], [], len(START)
        for token in tokens:
            starts.append(position)
            position += len(token)
            ends.append(position)
            position += 1  # the space after it
        return START + " ".join(tokens) + END, starts, ends

    def _ids(self, text: str, side: str) -> np.ndarray:
        get = self.chars[side].get
        return np.fromiter((get(c, _UNKNOWN) for c in text), dtype=np.int64, count=len(text))

    def features(self, params: dict, sentences, T: int) -> np.ndarray:
        """(B, T, output_size) token features of ``sentences`` (lists of tokens), zero past
        each sentence's last token."""
        B = len(sentences)
        dtype = params[f"{self.prefix}fwd.emb.char"].dtype
        out = np.zeros((B, T, self.output_size), dtype)
        if B == 0:
            return out
        layouts = [self.layout(tokens) for tokens in sentences]
        L = max(len(text) for text, _, _ in layouts)
        H = self.networks["fwd"].hidden_size
        for side, column in (("fwd", 0), ("bwd", H)):
            network = self.networks[side]
            ids = np.zeros((B, L), np.int64)  # right-padded: padding comes after every state read
            for b, (text, _, _) in enumerate(layouts):
                ids[b, :len(text)] = self._ids(text if side == "fwd" else text[::-1], side)
            top, _, _ = network._forward(self._side_params(params, side), ids,
                                         network.initial_state(B, dtype), None, False)
            width = network.hidden_size
            for b, (text, starts, ends) in enumerate(layouts):
                if not starts:
                    continue
                if side == "fwd":  # after the token's last character
                    positions = np.array(ends) - 1
                else:  # reading from the right: after the token's first character
                    positions = len(text) - 1 - np.array(starts)
                out[b, :len(starts), column:column + width] = top[b, positions]
        return out
