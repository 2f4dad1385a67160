"""Heads on a functional backbone: what `SelfDistillModel.from_backbone` does.

The backbone is not rewritten: each head is called on the output of a named
layer ("tap") of the backbone's own graph, so the heads share its layers and
weights, and the backbone's output stays the deepest classifier. Every check
here names the wrong value and what would work.
"""

import keras

from keras_selfdistill.layers.auxiliary_head import BLOCKS
from keras_selfdistill.layers.auxiliary_head import AuxiliaryHead
from keras_selfdistill.models.graph import ancestor_tensors
from keras_selfdistill.models.graph import producing_layer
from keras_selfdistill.validation import check_integer
from keras_selfdistill.validation import close_matches_hint


def attach_heads(
    backbone,
    taps,
    head_width=None,
    head_num_downsampling="auto",
    head_block="single",
    head_attention=False,
):
    """Calls an `AuxiliaryHead` on the output of each tapped layer.

    Args:
        backbone: a functional (or built Sequential) `keras.Model` with one
            output of logits.
        taps: list of layer names, shallow to deep.
        head_width: int or `None` (the width of the deepest classifier's
            features).
        head_num_downsampling: `"auto"` or int >= 0.
        head_block: `"single"` or `"double"` (`AuxiliaryHead`'s `block`).
        head_attention: bool (`AuxiliaryHead`'s `attention`).

    Returns:
        `(inputs, heads, output)`: the backbone's symbolic inputs (in the
        user's structure), the heads' logits tensors `head_1, head_2, ...`,
        and the backbone's output.
    """
    inputs, output = backbone_inputs_and_output(backbone)
    check_taps(backbone, taps)
    if head_width is not None:
        check_integer("head_width", head_width, 1)
    _check_num_downsampling(head_num_downsampling)
    _check_head_block(head_block, head_attention)
    deepest_layer = producing_layer(output)
    deepest_map = _last_feature_map(backbone)
    ancestors = ancestor_tensors(output)
    heads = []
    for index, tap in enumerate(taps):
        tapped = _tapped_tensor(backbone, tap, taps, ancestors, deepest_layer)
        num_downsampling = head_num_downsampling
        if num_downsampling == "auto":
            num_downsampling = _auto_downsampling(tapped, deepest_map)
        head = AuxiliaryHead(
            num_classes=output.shape[-1],
            width=head_width or _features_width(deepest_layer),
            num_downsampling=num_downsampling,
            block=head_block,
            attention=head_attention,
            name=f"head_{index + 1}",
        )
        heads.append(head(tapped))
    return inputs, heads, output


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
    if isinstance(taps, str) or not isinstance(taps, (list, tuple)) or not taps:
        raise ValueError(
            "`taps` must be a non-empty list of layer names, shallow to "
            f"deep. Received: taps={taps!r}"
        )
    layer_names = [layer.name for layer in backbone.layers]
    positions = []
    for tap in taps:
        if not isinstance(tap, str):
            raise ValueError(
                "`taps` must be a list of layer names (str), shallow to "
                f"deep. Received: taps={list(taps)!r}, with {tap!r} of "
                f"type {type(tap).__name__}"
            )
        if tap not in layer_names:
            raise ValueError(_unknown_tap_message(backbone, tap, taps))
        positions.append(layer_names.index(tap))
    if positions != sorted(positions) or len(set(positions)) != len(positions):
        raise ValueError(
            "`taps` must be distinct and ordered shallow to deep (the "
            "order of the backbone's layers). Received: "
            f"taps={list(taps)}; in backbone order they are "
            f"{[layer_names[p] for p in sorted(set(positions))]}."
        )


def _check_num_downsampling(value) -> None:
    if value != "auto" and (
        isinstance(value, bool) or not isinstance(value, int) or value < 0
    ):
        raise ValueError(
            "`head_num_downsampling` must be 'auto' or an integer >= 0. "
            f"Received: head_num_downsampling={value!r}"
        )


def _check_head_block(block, attention) -> None:
    if not isinstance(block, str) or block not in BLOCKS:
        raise ValueError(
            f"`head_block` must be one of {', '.join(map(repr, BLOCKS))}. "
            f"Received: head_block={block!r}"
        )
    if not isinstance(attention, bool):
        raise ValueError(
            "`head_attention` must be True or False. "
            f"Received: head_attention={attention!r}"
        )


def _features_width(classifier_layer):
    """The width of the classifier's input features, or `None`."""
    features = classifier_layer.input
    if isinstance(features, (list, tuple, dict)):
        return None
    return features.shape[-1]


def _unknown_tap_message(backbone, tap, taps):
    """Why `tap` is not a layer of `backbone`, with what would work."""
    layer_names = [layer.name for layer in backbone.layers]
    received = f" Received: taps={list(taps)!r}"
    for layer in backbone.layers:
        if isinstance(layer, keras.Model) and tap in [
            inner.name for inner in getattr(layer, "layers", [])
        ]:
            return (
                f"Layer '{tap}' is inside the nested model '{layer.name}' "
                f"of '{backbone.name}'; taps must be layers of the backbone "
                f"itself. Pass '{layer.name}' as the backbone (with a "
                "classifier), or build the backbone without nesting."
                + received
            )
    hint = close_matches_hint(tap, layer_names)
    return f"Layer '{tap}' is not in model '{backbone.name}'.{hint}" + received


def _tapped_tensor(backbone, tap, taps, ancestors, deepest_layer):
    """The one tensor `tap` makes on the way to the backbone's output."""
    layer = backbone.get_layer(tap)
    received = f" Received: taps={list(taps)!r}"
    if isinstance(layer.output, (list, tuple, dict)):
        shapes = [tuple(t.shape) for t in keras.tree.flatten(layer.output)]
        raise ValueError(
            f"Layer '{tap}' has {len(shapes)} outputs (shapes {shapes}), but a "
            "head needs one tensor. Tap a layer with one output, e.g. the "
            "layer that consumes the output you want." + received
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
    calls = [t for t in ancestors if producing_layer(t) is layer]
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


def _auto_downsampling(tapped, deepest_map):
    """Stride-2 blocks that bring `tapped` to `deepest_map`'s resolution."""
    if len(tapped.shape) <= 2:
        return 1
    if deepest_map is None or len(deepest_map.shape) != len(tapped.shape):
        return 1
    tapped_size = tapped.shape[1]
    deepest_size = deepest_map.shape[1]
    if not tapped_size or not deepest_size:
        return 1
    blocks = 0
    while tapped_size > deepest_size:
        tapped_size = (tapped_size + 1) // 2
        blocks += 1
    return max(blocks, 1)

