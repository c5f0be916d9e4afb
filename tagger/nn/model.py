"""Full networks: input features (token features, or numeric values as they are) → recurrent
layers → a tagging head (:class:`TaggerModel`) or pooling and a classifier
(:class:`ClassifierModel`).
"""

from __future__ import annotations

import numpy as np

from .. import _config
from .classifier import ClassifierNetwork
from .features import NumericBatch, NumericFeaturizer, TokenBatch, TokenFeaturizer
from .network import TaggingNetwork

Featurizer = TokenFeaturizer | NumericFeaturizer
Batch = TokenBatch | NumericBatch


def _on_device(params) -> bool:
    """Whether ``params`` is a GPU copy (:class:`tagger.nn.resident.DeviceParams`): then the
    model runs wholly on the device."""
    return getattr(params, "on_device", False)


class _FeaturizedModel:
    """A featurizer feeding a network; the parameters of both in one dict."""

    def __init__(self, featurizer: Featurizer, network: TaggingNetwork | ClassifierNetwork):
        if network.rnn.input_size != featurizer.output_size:
            raise ValueError("the network's input size differs from the featurizer's output size")
        self.featurizer = featurizer
        self.network = network

    @property
    def device(self) -> str:
        return self.network.rnn.device

    def set_device(self, device: str) -> None:
        """Run the network with the kernels of ``device`` ("cpu" or "cuda"); the token features
        stay on the CPU."""
        self.network.set_device(device)

    def prediction_params(self, params: dict):
        """The parameters to predict with: on the GPU (with resident execution on) a device copy
        of ``params`` made once for the whole call, else ``params`` themselves."""
        if self.device == "cuda" and _config.CUDA_RESIDENT:
            from .resident import upload_params

            return upload_params(self, params)
        return params

    def hold_features(self) -> None:
        """For training: keep what the featurizer computes the same way every epoch (the
        frozen language models' contextual features, :meth:`CharLMFeatures.hold`) until
        :meth:`release_workspaces`."""
        context = getattr(self.featurizer, "context", None)
        if context is not None:
            context.hold()

    def release_workspaces(self) -> None:
        """Drop the arrays that the recurrent stacks keep for reuse between training batches,
        and the features kept by :meth:`hold_features`."""
        for stack in (self.network.rnn, getattr(self.featurizer, "char_rnn", None)):
            if stack is not None:
                stack.workspace.clear()
        context = getattr(self.featurizer, "context", None)
        if context is not None:
            context.release()

    def param_shapes(self) -> dict[str, tuple]:
        """Name to shape of every parameter of :meth:`init_params`, in its order, computed
        without initialising anything (what a model file must hold)."""
        shapes = self.featurizer.param_shapes()
        shapes.update(self.network.param_shapes())
        return shapes

    def init_params(self, rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
        """Fresh parameters of the featurizer and the network."""
        params = self.featurizer.init_params(rng, dtype)
        params.update(self.network.init_params(rng, dtype))
        return params


class TaggerModel(_FeaturizedModel):
    """A featurizer feeding a :class:`TaggingNetwork`; parameters in one dict.

    Parameters
    ----------
    featurizer : TokenFeaturizer or NumericFeaturizer
        Produces the step vectors.
    network : TaggingNetwork
        Recurrent layers and output head; its ``input_size`` equals the featurizer's output size.
    """


    def loss_and_grads(self, params, batch: Batch, tags: np.ndarray,
                       rng: np.random.Generator | None = None):
        """Mean loss over the batch's sentences and the gradients of every parameter."""
        x, cache = self.featurizer.forward(params, batch, rng)
        loss, grads, dx = self.network.loss_and_grads(params, x, batch.lengths, tags, rng)
        grads.update(self.featurizer.backward(params, batch, cache, dx))
        return loss, grads

    def scores(self, params, batch: Batch) -> np.ndarray:
        """Emission scores (B, T, K) in inference mode."""
        x, _ = self.featurizer.forward(params, batch, need_backward=False)
        return self.network.scores(params, x, batch.lengths)

    def predict(self, params, batch: Batch) -> np.ndarray:
        """Best tag ids (B, T), -1 at padding."""
        if _on_device(params):
            from .resident import tagger_outputs

            return tagger_outputs(self, params, batch)[0]
        return self.network.head.decode(params, self.scores(params, batch), batch.lengths)

    def predict_and_marginals(self, params, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` and the tag probabilities (B, T, K), zero at padding, from one pass
        over the network."""
        if _on_device(params):
            from .resident import tagger_outputs

            return tagger_outputs(self, params, batch, marginals=True)
        scores = self.scores(params, batch)
        head = self.network.head
        return (head.decode(params, scores, batch.lengths),
                head.marginals(params, scores, batch.lengths))


class ClassifierModel(_FeaturizedModel):
    """A featurizer feeding a :class:`ClassifierNetwork`; parameters in one dict.

    Parameters
    ----------
    featurizer : TokenFeaturizer or NumericFeaturizer
        Produces the step vectors.
    network : ClassifierNetwork
        Recurrent layers, pooling and the output layer.
    """


    def loss_and_grads(self, params, batch: Batch, labels: np.ndarray,
                       rng: np.random.Generator | None = None, sample_weight=None):
        """Weighted mean cross-entropy over the batch and the gradients of every parameter."""
        x, cache = self.featurizer.forward(params, batch, rng)
        loss, grads, dx = self.network.loss_and_grads(params, x, batch.lengths, labels, rng,
                                                      sample_weight)
        grads.update(self.featurizer.backward(params, batch, cache, dx))
        return loss, grads

    def logits(self, params, batch: Batch) -> np.ndarray:
        """Class scores (B, C) in inference mode."""
        if _on_device(params):
            from .resident import classifier_outputs

            return classifier_outputs(self, params, batch)
        x, _ = self.featurizer.forward(params, batch, need_backward=False)
        return self.network.logits(params, x, batch.lengths)
