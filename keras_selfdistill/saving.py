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


class AtomicSaving:
    """Mixin for a `keras.Model`: `save`/`save_weights` that never leave
    half a file, and a `load_weights` that refuses another model's layout.

    Put it before `keras.Model` among the bases; every method calls Keras's
    own through `super()`.
    """

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the model as a `.keras` file, never leaving half a file.

        Same as `keras.Model.save`, except that a local file is written to a
        temporary name in the same directory and then renamed, so `filepath`
        is always a complete file: the previous one until the new one is
        complete (`ModelCheckpoint` goes through here too). Remote paths,
        file objects, `zipped=False` directories and other extensions are
        saved by Keras directly.
        """
        parent_save = super().save
        if not _writes_locally(filepath, ".keras", overwrite) or zipped is False:
            return parent_save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)
        write_atomically(
            filepath,
            lambda path: parent_save(path, overwrite=True, zipped=zipped, **kwargs),
        )

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """Saves the weights to a `.weights.h5` file, never leaving half a
        file (see `save`; `BackupAndRestore` goes through here). Sharded and
        remote files are saved by Keras directly."""
        parent_save_weights = super().save_weights
        if (
            not _writes_locally(filepath, ".weights.h5", overwrite)
            or max_shard_size is not None
        ):
            return parent_save_weights(
                filepath, overwrite=overwrite, max_shard_size=max_shard_size
            )
        write_atomically(
            filepath, lambda path: parent_save_weights(path, overwrite=True)
        )

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Loads weights saved by a model built the same way.

        Keras matches weights by their position among layers of the same
        type, so a file saved with other heads, taps, widths, peers or
        another student could load into the wrong layers without a word, or
        fail after loading part of it. Here the file's layout is first
        compared with this model's: a different one raises a `ValueError`
        that names the differences, and nothing is loaded.
        `skip_mismatch=True` loads what matches, as in Keras.
        """
        if not skip_mismatch:
            check_weights_layout(
                self, filepath, super().save_weights, self.layout_description()
            )
        return super().load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)

    def layout_description(self) -> str:
        """How a layout error names this model's configuration."""
        return type(self).__name__


def _writes_locally(filepath, extension, overwrite) -> bool:
    """Whether Keras would write `filepath` as one local file we can write
    atomically instead."""
    return (
        is_local_path(filepath)
        and os.fspath(filepath).endswith(extension)
        and (overwrite or not os.path.exists(filepath))
    )
