"""The compute of a multi-head model: multiply-accumulates per head.

The cost of a head is the number of multiply-accumulates (MACs) of the
layers its logits depend on, counted from each layer's kernel sizes and
output resolution: for every weight of rank >= 2 (convolution, depthwise
and pointwise kernels, dense kernels), `prod(weight.shape) * prod(output
spatial shape)`. That is exact for dense, convolution, depthwise and
separable convolution layers with "same" or "valid" padding, and it ignores
what costs O(activations) rather than O(weights x positions): biases, batch
normalisation, activations, pooling, additions, softmax. Attention score
products are not counted (only the projections), and embedding tables count
nothing. Exiting at head `k` costs the MACs of every layer on the paths to
heads `1..k` (the shallower heads were evaluated and declined), so the
deepest exit costs a bit more than the plain network, the path to the
deepest classifier alone (`backbone_cost`).
"""

import math

import keras

from keras_selfdistill.data_format import spatial_shape
from keras_selfdistill.layers.auxiliary_head import AuxiliaryHead


def _positions(shape, layer_name, data_format="channels_last") -> int:
    """Number of output positions: the product of the spatial axes."""
    spatial = spatial_shape(shape, data_format)
    if any(size is None for size in spatial):
        raise ValueError(
            "Counting compute needs static spatial shapes, but layer "
            f"'{layer_name}' has output shape {tuple(shape)}. Build the model "
            "with a fixed input size, e.g. keras.Input((32, 32, 3))."
        )
    return math.prod(spatial) if spatial else 1


def _kernel_size(layer) -> int:
    return sum(
        math.prod(weight.shape) for weight in layer.weights if len(weight.shape) >= 2
    )


def _auxiliary_head_macs(head) -> int:
    # Its blocks are not separate nodes of the graph: follow the shapes.
    shape = tuple(head.input.shape)
    macs = 0
    for block in head.bottleneck.blocks:
        main = block[0]
        shape = tuple(main.compute_output_shape(shape))
        macs += _kernel_size(main) * _positions(
            shape, main.name, head.bottleneck.data_format
        )
    return macs + _kernel_size(head.classifier)


def layer_macs(layer) -> int:
    """Multiply-accumulates of one call of `layer` on one sample.

    See the module docstring for the rule. A nested functional model counts
    the sum of its layers; an `AuxiliaryHead` counts its blocks at their own
    resolutions plus its classifier.

    Args:
        layer: a `keras.layers.Layer` of a functional graph (called once).

    Returns:
        An int (0 for layers without kernels, such as pooling or batch
        normalisation).
    """
    if isinstance(layer, AuxiliaryHead):
        return _auxiliary_head_macs(layer)
    if isinstance(layer, keras.layers.Embedding):
        return 0
    if isinstance(layer, keras.Model) and getattr(layer, "outputs", None):
        return sum(layer_macs(inner) for inner in layer.layers)
    kernels = _kernel_size(layer)
    if not kernels:
        return 0
    try:
        output = layer.output
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Cannot count the compute of layer '{layer.name}': it must be "
            "called exactly once in the model's graph (shared layers are not "
            f"supported). {error}"
        ) from None
    if isinstance(output, (list, tuple, dict)):
        output = keras.tree.flatten(output)[0]
    data_format = getattr(layer, "data_format", None) or "channels_last"
    return kernels * _positions(output.shape, layer.name, data_format)


def _heads_graph(model):
    """The functional model whose outputs are the heads, shallow to deep."""
    if hasattr(model, "export_heads"):
        return model.export_heads()
    if not isinstance(model, keras.Model) or not getattr(model, "outputs", None):
        raise ValueError(
            "Counting compute per head needs a SelfDistillModel or a "
            "functional keras.Model with one logits output per head, shallow "
            f"to deep. Received: {model!r}"
        )
    return model


def _path_layers(graph, output):
    """The layers `output` depends on, in a new functional view."""
    # A functional model keeps only the layers between its inputs and
    # outputs, so this is the head's path through the shared layers.
    return keras.Model(graph.inputs, output).layers


def head_costs(model) -> list:
    """The compute of an early exit at each head, in MACs per sample.

    Entry `k` is the multiply-accumulates of every layer on the paths to
    heads `0..k` (0 = shallowest), counted once each: what a sample that
    exits at head `k` has cost, the shallower heads included.

    Args:
        model: a `SelfDistillModel`, or a functional `keras.Model` with one
            logits output per head, shallow to deep (e.g. `export_heads()`).

    Returns:
        A list of ints, one per head, non-decreasing.
    """
    graph = _heads_graph(model)
    seen = {}
    costs = []
    for output in graph.outputs:
        for layer in _path_layers(graph, output):
            if id(layer) not in seen:
                seen[id(layer)] = layer_macs(layer)
        costs.append(sum(seen.values()))
    return costs


def backbone_cost(model) -> int:
    """MACs per sample of the plain network: the deepest head's path alone.

    Args:
        model: as for `head_costs`.

    Returns:
        An int, the denominator of every cost fraction of the anytime curve.
    """
    graph = _heads_graph(model)
    return sum(layer_macs(layer) for layer in _path_layers(graph, graph.outputs[-1]))
