"""Saving that never leaves a half-written file, and loading that never
half-loads a file made by another configuration.

Keras 3 writes `model.save(path)` and `model.save_weights(path)` straight
into `path` (`open(path, "wb")`): a crash, a kill or a full disk in the middle
leaves a truncated file where the previous good checkpoint was. And
`load_weights` matches weights by position among layers of the same type, so
a file saved by a model with other heads either fails after loading part of
the weights, or loads silently into the wrong layers.

Every model of this package saves through `write_atomically` (a temporary
file in the same directory, then one `os.replace`), and checks a weights file
against its own layout with `check_weights_layout` before loading it.
"""

import io
import os
import tempfile
import zipfile

#: The member of a `.keras` archive holding the weights.
_KERAS_WEIGHTS_MEMBER = "model.weights.h5"
#: Weights of these groups are not compared: the optimizer's state exists
#: only once it is built, and Keras already reports a mismatch there.
_UNCOMPARED_PREFIXES = ("optimizer/",)


def is_local_path(filepath) -> bool:
    """Whether `filepath` is a path on this machine (not `gs://`, `hf://`,
    a file object, ...)."""
    if not isinstance(filepath, (str, os.PathLike)):
        return False
    return "://" not in os.fspath(filepath)


def write_atomically(path, write) -> None:
    """Calls `write(temporary_path)`, then renames it to `path`.

    The temporary file is in the same directory and its name ends with
    `path`'s file name (so `.keras` and `.weights.h5` checks still pass). The
    rename is atomic on POSIX and Windows: `path` is always either the old
    complete file or the new complete file, never a half-written one. If
    `write` raises (or the process is killed), the temporary file is removed
    (or left under a hidden `.partial-` name) and `path` is untouched.

    Args:
        path: str or `os.PathLike`. The file to write.
        write: callable taking the temporary path and writing the file.
    """
    path = os.fspath(path)
    directory, filename = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(
        prefix=".partial-", suffix=f"-{filename}", dir=directory
    )
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _h5_layout(h5_file):
    """`{dataset path: shape}` of every weight in an open h5 file."""
    layout = {}

    def visit(name, item):
        if hasattr(item, "shape") and not name.startswith(_UNCOMPARED_PREFIXES):
            layout[name] = tuple(item.shape)

    h5_file.visititems(visit)
    return layout


def weights_layout(filepath):
    """Where each weight sits in a `.weights.h5` or `.keras` file.

    Args:
        filepath: path of a `.weights.h5` file or a `.keras` archive.

    Returns:
        A dict `{path inside the file: shape}`, optimizer state left out, or
        `None` for a file of another kind (sharded weights, legacy `.h5`).
    """
    import h5py  # A dependency of Keras itself, used by every `.keras` file.

    filepath = os.fspath(filepath)
    if filepath.endswith(".weights.h5"):
        with h5py.File(filepath, "r") as h5_file:
            return _h5_layout(h5_file)
    if filepath.endswith(".keras") and zipfile.is_zipfile(filepath):
        with zipfile.ZipFile(filepath) as archive:
            if _KERAS_WEIGHTS_MEMBER not in archive.namelist():
                return None
            data = io.BytesIO(archive.read(_KERAS_WEIGHTS_MEMBER))
        with h5py.File(data, "r") as h5_file:
            return _h5_layout(h5_file)
    return None


def check_weights_layout(model, filepath, save_weights, description) -> None:
    """Raises before loading a weights file laid out for another model.

    The expected layout is what `save_weights` writes for `model` now, so
    the comparison follows whatever order Keras uses; nothing is loaded.

    Args:
        model: the model about to load.
        filepath: the `.weights.h5` or `.keras` file to load.
        save_weights: callable `(path)` saving `model`'s weights (Keras's own
            `save_weights`, not an override).
        description: str. What the model's configuration is, for the
            message (e.g. "heads ['head_1', 'logits']").

    Raises:
        ValueError: naming the file, this model's configuration, and the
            first weights that differ.
    """
    if not is_local_path(filepath) or not os.path.isfile(filepath):
        return  # Keras gives its own error for a missing file.
    saved = weights_layout(filepath)
    if saved is None:
        return
    with tempfile.TemporaryDirectory() as directory:
        expected_path = os.path.join(directory, "expected.weights.h5")
        save_weights(expected_path)
        expected = weights_layout(expected_path)
    if saved == expected:
        return
    only_saved = sorted(set(saved) - set(expected))
    only_expected = sorted(set(expected) - set(saved))
    reshaped = sorted(
        name for name in set(saved) & set(expected) if saved[name] != expected[name]
    )
    differences = (
        [f"only in the file: {name} {saved[name]}" for name in only_saved[:3]]
        + [f"missing from the file: {name} {expected[name]}" for name in only_expected[:3]]
        + [
            f"{name}: {saved[name]} in the file, {expected[name]} here"
            for name in reshaped[:3]
        ]
    )
    raise ValueError(
        f"The weights in {os.fspath(filepath)!r} were saved by a model with "
        f"another configuration, so they cannot be loaded into "
        f"{type(model).__name__} '{model.name}' ({description}); nothing was "
        f"loaded. {len(saved)} weights in the file, {len(expected)} here; "
        f"first differences: {'; '.join(differences)}. Load a file saved by "
        "a model built the same way (same heads, taps, widths, teacher and "
        "student), use keras.saving.load_model to get the saved model "
        "itself, or pass skip_mismatch=True to load what matches. "
        f"Received: filepath={os.fspath(filepath)!r}"
    )
