"""Heads on a functional backbone: what `SelfDistillModel.from_backbone` does.

The backbone is not rewritten: each head is called on the output of a named
layer ("tap") of the backbone's own graph, so the heads share its layers and
weights, and the backbone's output stays the deepest classifier. Every check
here names the wrong value and what would work.
"""

import keras

from keras_selfdistill.compat import tensor_output_index
from keras_selfdistill.data_format import DATA_FORMATS
from keras_selfdistill.data_format import channel_axis
from keras_selfdistill.data_format import spatial_shape
from keras_selfdistill.layers.auxiliary_head import AuxiliaryHead
from keras_selfdistill.layers.auxiliary_head import check_block_and_attention
from keras_selfdistill.models.graph import ancestor_tensors
from keras_selfdistill.models.graph import classifier_features
from keras_selfdistill.models.graph import known_outputs
from keras_selfdistill.models.graph import producing_layer
from keras_selfdistill.validation import check_unit_interval
from keras_selfdistill.validation import close_matches_hint


#: `head_width` value for heads whose blocks double the tapped channels
#: (the paper's heads, `AuxiliaryHead(width=None)`).
DOUBLING = "doubling"


def attach_heads(
    backbone,
    taps,
    head_width=None,
    head_num_downsampling="auto",
    head_block="single",
    head_attention=False,
    features=None,
    head_gradient_scale=1.0,
):
    """Calls an `AuxiliaryHead` on the output of each tapped layer.

    Args:
        backbone: a functional (or built Sequential) `keras.Model` with one
            output of logits; it may hold nested functional or Sequential
            models, whose layers can be tapped.
        taps: list of layer names (or `(name, output_index)` pairs for
            layers with several outputs), shallow to deep.
        head_width: int, `None` (the width of the deepest classifier's
            features) or `"doubling"` (each block doubles the tap's
            channels: `AuxiliaryHead(width=None)`).
        head_num_downsampling: `"auto"` or int >= 0.
        head_block: `"single"` or `"double"` (`AuxiliaryHead`'s `block`).
        head_attention: bool (`AuxiliaryHead`'s `attention`).
        features: str or `None`. The layer whose output are the deepest
            classifier's features (found from the classifier when `None`).
        head_gradient_scale: float in [0, 1] (`AuxiliaryHead`'s
            `gradient_scale`).

    Returns:
        `(inputs, heads, output)`: the backbone's symbolic inputs (in the
        user's structure), the heads' logits tensors `head_1, head_2, ...`,
        and the backbone's output.
    """
    backbone_inputs_and_output(backbone)
    check_tap_format(taps)
    _check_head_width(head_width)
    _check_num_downsampling(head_num_downsampling)
    check_block_and_attention(head_block, head_attention, prefix="head_")
    check_unit_interval("head_gradient_scale", head_gradient_scale)
    graph = _graph_with_taps(backbone, taps, features)
    inputs, output = backbone_inputs_and_output(graph)
    check_taps(graph, taps)
    deepest_layer = producing_layer(output)
    _, deepest_features = classifier_features(output, features)
    deepest_map = _last_feature_map(graph)
    data_format = _backbone_data_format(graph)
    ancestors = ancestor_tensors(output)
    heads = []
    for index, tap in enumerate(taps):
        tapped = _tapped_tensor(graph, tap, taps, ancestors, deepest_layer)
        num_downsampling = head_num_downsampling
        if num_downsampling == "auto":
            num_downsampling = _auto_downsampling(tapped, deepest_map, data_format)
        head = AuxiliaryHead(
            num_classes=output.shape[-1],
            width=_head_width(head_width, deepest_features, data_format),
            num_downsampling=num_downsampling,
            block=head_block,
            attention=head_attention,
            classifier_dtype=_classifier_dtype(output),
            gradient_scale=head_gradient_scale,
            data_format=data_format,
            name=f"head_{index + 1}",
        )
        heads.append(head(tapped))
    return inputs, heads, output


def _classifier_dtype(output):
    """float32 logits for the heads when the user's logits are float32 under
    a half-precision policy (Keras's advice for the output layer)."""
    policy = keras.mixed_precision.global_policy()
    if output.dtype == "float32" and policy.compute_dtype != "float32":
        return "float32"
    return None


def tap_name(tap):
    """The layer name of a tap: `"name"` or `("name", output_index)`."""
    return tap[0] if isinstance(tap, (list, tuple)) else tap


def check_tap_format(taps) -> None:
    """Refuses taps that are not a list of names or `(name, index)` pairs."""
    if isinstance(taps, str) or not isinstance(taps, (list, tuple)) or not taps:
        raise ValueError(
            "`taps` must be a non-empty list of layer names, shallow to "
            f"deep. Received: taps={taps!r}"
        )
    for tap in taps:
        if isinstance(tap, str):
            continue
        if (
            isinstance(tap, tuple)
            and len(tap) == 2
            and isinstance(tap[0], str)
            and isinstance(tap[1], int)
            and not isinstance(tap[1], bool)
            and tap[1] >= 0
        ):
            continue
        raise ValueError(
            "`taps` must be a list of layer names (str), or (name, "
            "output_index) pairs for layers with several outputs, shallow "
            f"to deep. Received: taps={list(taps)!r}, with {tap!r} of "
            f"type {type(tap).__name__}"
        )


def _is_graph_model(layer) -> bool:
    """A functional or Sequential model: its layers can be called one by
    one. A subclassed model's `call` is Python code, not a graph."""
    if isinstance(layer, keras.Sequential):
        return bool(layer.built and known_outputs(layer))
    return isinstance(layer, keras.Model) and bool(known_outputs(layer))


def nested_layers(model, path=()):
    """`(path, layer)` for every layer inside `model`, at any depth, where
    `path` lists the names of the models around it."""
    for layer in model.layers:
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from nested_layers(layer, path + (layer.name,))


def _graph_with_taps(backbone, taps, features):
    """`backbone`, or a flat copy of its graph when a name is inside a nested
    model: the nested functional/Sequential models called layer by layer on
    new symbolic tensors (the same layer objects, so the same weights)."""
    top_level = {layer.name for layer in backbone.layers}
    wanted = [tap_name(tap) for tap in taps] + ([features] if features else [])
    if all(name in top_level for name in wanted):
        return backbone
    inner = {}
    for path, layer in nested_layers(backbone):
        if path:
            inner.setdefault(layer.name, []).append((path, layer))
    missing = [name for name in wanted if name not in top_level]
    reachable = []
    for name in missing:
        found = inner.get(name, [])
        if found and all(
            _path_is_graph(backbone, path) for path, _ in found
        ):
            reachable.append(name)
    if not reachable:
        return backbone  # check_taps names what is wrong.

    def call(layer, *args, **kwargs):
        if _is_graph_model(layer):
            return _inline(layer, args, call)
        return layer(*args, **kwargs)

    inputs = keras.tree.map_structure(
        lambda x: keras.Input(
            batch_shape=x.shape, dtype=x.dtype, name=producing_layer(x).name
        ),
        backbone.input,
    )
    outputs = _inline(backbone, (inputs,), call)
    try:
        return keras.Model(inputs, outputs, name=backbone.name)
    except ValueError as error:
        raise ValueError(
            f"The nested models of '{backbone.name}' cannot be flattened "
            "into one graph to tap layers inside them (layer names must be "
            f"unique across the nesting): {error}. Received: "
            f"taps={list(taps)!r}"
        ) from error


def _path_is_graph(backbone, path) -> bool:
    model = backbone
    for name in path:
        model = model.get_layer(name)
        if not _is_graph_model(model):
            return False
    return True


def _inline(model, args, call):
    """Calls `model`'s layers one by one on `args` (nested models too)."""
    inputs = args[0] if len(args) == 1 else list(args)
    if isinstance(model, keras.Sequential):
        outputs = inputs
        for layer in model.layers:
            outputs = call(layer, outputs)
        return outputs
    flat_inputs = keras.tree.flatten(inputs)
    if len(flat_inputs) == len(keras.tree.flatten(model.input)):
        # A functional model accepts its inputs in any structure with the
        # same leaves (keras-hub backbones take a dict {"images": ...}).
        inputs = keras.tree.pack_sequence_as(model.input, flat_inputs)
    clone = keras.models.clone_model(
        model,
        input_tensors=inputs,
        clone_function=lambda layer: layer,
        call_function=call,
    )
    return clone.output


def backbone_inputs_and_output(backbone):
    """The symbolic inputs (the user's structure) and the one output of a
    functional backbone; a clear error for anything else."""
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            "from_backbone needs a functional keras.Model (or a Sequential "
            "built with a keras.Input) so heads can be attached to its "
            f"layers. Received: backbone={backbone!r} of type "
            f"{type(backbone).__name__}"
        )
    inputs = getattr(backbone, "inputs", None)
    outputs = getattr(backbone, "outputs", None)
    if not inputs or not outputs:
        raise ValueError(
            "from_backbone needs a functional keras.Model (or a Sequential "
            "built with a keras.Input) so heads can be attached to its "
            f"layers. Received: {type(backbone).__name__} "
            f"'{backbone.name}', which has no symbolic inputs. For a "
            "subclassed model, wire the heads with the functional API and "
            "pass them to SelfDistillModel(inputs, outputs)."
        )
    if len(outputs) != 1:
        raise ValueError(
            "from_backbone needs a backbone with one output (the logits). "
            f"Received a backbone with {len(outputs)} outputs."
        )
    if len(inputs) == 1:
        inputs = inputs[0]
    elif not isinstance(backbone, keras.Sequential):
        inputs = backbone.input  # The user's dict/list structure.
    return inputs, outputs[0]


def check_taps(backbone, taps) -> None:
    """Refuses taps that are not distinct layer names of `backbone`, shallow
    to deep."""
    check_tap_format(taps)
    layer_names = [layer.name for layer in backbone.layers]
    positions = []
    for tap in taps:
        name = tap_name(tap)
        if name not in layer_names:
            raise ValueError(_unknown_tap_message(backbone, name, taps))
        positions.append((layer_names.index(name), _tap_index(tap)))
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise ValueError(
            "`taps` must be distinct and ordered shallow to deep (the "
            "order of the backbone's layers). Received: "
            f"taps={list(taps)}; in backbone order they are "
            f"{[layer_names[p] for p, _ in sorted(set(positions))]}."
        )


def _tap_index(tap):
    return tap[1] if isinstance(tap, tuple) else None


def _check_num_downsampling(value) -> None:
    if value != "auto" and (
        isinstance(value, bool) or not isinstance(value, int) or value < 0
    ):
        raise ValueError(
            "`head_num_downsampling` must be 'auto' or an integer >= 0. "
            f"Received: head_num_downsampling={value!r}"
        )


def _backbone_data_format(backbone):
    """The layout of the backbone's convolutions and poolings, if they all
    agree; else Keras's global `image_data_format()`."""
    formats = {
        layer.data_format for _, layer in nested_layers(backbone)
        if getattr(layer, "data_format", None) in DATA_FORMATS
    }
    if len(formats) == 1:
        return formats.pop()
    return keras.config.image_data_format()


def _check_head_width(head_width):
    if head_width is None or head_width == DOUBLING:
        return
    if isinstance(head_width, bool) or not isinstance(head_width, int) or head_width < 1:
        raise ValueError(
            "`head_width` must be an integer >= 1, None (the deepest "
            f"features' width) or {DOUBLING!r}. Received: head_width={head_width!r}"
        )


def _head_width(head_width, deepest_features, data_format):
    """`AuxiliaryHead`'s `width` for `from_backbone`'s `head_width`."""
    if head_width == DOUBLING:
        return None
    return head_width or _features_width(deepest_features, data_format)


def _features_width(features, data_format):
    """The width of the classifier's input features, or `None`."""
    if isinstance(features, (list, tuple, dict)):
        return None
    return features.shape[channel_axis(data_format, len(features.shape))]


def _unknown_tap_message(backbone, tap, taps):
    """Why `tap` is not a layer of `backbone`, with what would work."""
    received = f" Received: taps={list(taps)!r}"
    for path, layer in nested_layers(backbone):
        if layer.name != tap or not path:
            continue
        opaque = [name for name in path if not _path_is_graph(
            backbone, path[: path.index(name) + 1])]
        if opaque:
            return (
                f"Layer '{tap}' is inside the subclassed model "
                f"'{opaque[0]}' (path {'/'.join(path + (tap,))}), whose "
                "`call` is Python code, so no graph holds its intermediate "
                "tensors and no head can be attached to them from outside. "
                "What works: tap a layer of a functional or Sequential "
                f"model (at any depth), e.g. '{opaque[0]}' itself or a layer "
                f"after it; or return the tensor you want from "
                f"'{opaque[0]}'.call and build the model with the "
                "functional API and SelfDistillModel(inputs, [heads..., "
                "logits])." + received
            )
    layer_names = [
        layer.name for path, layer in nested_layers(backbone)
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    hint = close_matches_hint(tap, layer_names)
    return f"Layer '{tap}' is not in model '{backbone.name}'.{hint}" + received


def _tapped_tensor(backbone, tap, taps, ancestors, deepest_layer):
    """The one tensor `tap` makes on the way to the backbone's output."""
    index = _tap_index(tap)
    tap = tap_name(tap)
    layer = backbone.get_layer(tap)
    received = f" Received: taps={list(taps)!r}"
    layer_outputs = keras.tree.flatten(layer.output)
    if len(layer_outputs) > 1 and index is None:
        shapes = [tuple(t.shape) for t in layer_outputs]
        raise ValueError(
            f"Layer '{tap}' has {len(shapes)} outputs (shapes {shapes}), but a "
            "head needs one tensor. Tap one of them by its index, e.g. "
            f"taps=[('{tap}', 0)]." + received
        )
    if index is not None and index >= len(layer_outputs):
        raise ValueError(
            f"Layer '{tap}' has {len(layer_outputs)} output(s), so its "
            f"output index must be below {len(layer_outputs)}." + received
        )
    if layer is deepest_layer:
        raise ValueError(
            f"Layer '{tap}' makes the backbone's output (the deepest "
            "classifier, which teaches the heads); taps must be layers "
            "before it, on the path from the inputs to the output." + received
        )
    # Only calls on the path to the output count: a layer first called in
    # another graph (`layer.output` is that call) is tapped where this
    # backbone calls it.
    calls = [
        t for t in ancestors
        if producing_layer(t) is layer and tensor_output_index(t) == (index or 0)
    ]
    if not calls:
        raise ValueError(
            f"Layer '{tap}' does not feed the output of '{backbone.name}', so "
            "a head there would not be part of the network being trained. "
            "Taps must be layers on the path from the inputs to the output."
            + received
        )
    if len(calls) > 1:
        raise ValueError(
            f"Layer '{tap}' is called {len(calls)} times in "
            f"'{backbone.name}' (shared weights), so which call to tap is "
            "ambiguous. Tap a layer that is called once, e.g. one that "
            "follows the call you want." + received
        )
    return calls[0]


def _last_feature_map(backbone):
    """The last tensor of rank > 2 on the way to the classifier, or None."""
    for layer in reversed(backbone.layers):
        output = layer.output
        if isinstance(output, (list, tuple, dict)):
            continue
        if len(output.shape) > 2:
            return output
    return None


def _auto_downsampling(tapped, deepest_map, data_format):
    """Stride-2 blocks that bring `tapped` to `deepest_map`'s resolution."""
    if len(tapped.shape) <= 2:
        return 1
    if deepest_map is None or len(deepest_map.shape) != len(tapped.shape):
        return 1
    tapped_size = spatial_shape(tapped.shape, data_format)[0]
    deepest_size = spatial_shape(deepest_map.shape, data_format)[0]
    if not tapped_size or not deepest_size:
        return 1
    blocks = 0
    while tapped_size > deepest_size:
        tapped_size = (tapped_size + 1) // 2
        blocks += 1
    return max(blocks, 1)

