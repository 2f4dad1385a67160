"""Same-class partners for CS-KD: numpy arrays, PyDataset and tf.data."""

import numpy as np
from backend_utils import tensorflow_pass_only

from keras_selfdistill.class_pairs import ClassPairedBatches
from keras_selfdistill.class_pairs import class_partner_indices
from keras_selfdistill.class_pairs import pair_by_class

LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 2, 1, 1])


def assert_same_class_partners(labels, partners):
    assert np.all(partners != np.arange(len(labels))), "a sample is its own partner"
    np.testing.assert_array_equal(labels[partners], labels)


def test_every_partner_is_another_sample_of_the_same_class():
    assert_same_class_partners(LABELS, class_partner_indices(LABELS, seed=3))


def test_partners_are_random_but_seeded():
    draws = {tuple(class_partner_indices(LABELS, seed=s)) for s in range(8)}
    assert len(draws) > 1
    np.testing.assert_array_equal(
        class_partner_indices(LABELS, seed=5), class_partner_indices(LABELS, seed=5)
    )


def test_column_labels_pair_like_flat_labels():
    np.testing.assert_array_equal(
        class_partner_indices(LABELS[:, None], seed=1),
        class_partner_indices(LABELS, seed=1),
    )


def test_pair_by_class_gives_the_paired_layout_for_arrays():
    x = np.arange(len(LABELS), dtype="float32")[:, None] * 10
    paired, y = pair_by_class(x, LABELS, seed=0)
    assert sorted(paired) == ["inputs", "partner_inputs"]
    assert paired["inputs"] is x and y is LABELS
    partners = (paired["partner_inputs"][:, 0] / 10).astype(int)
    assert_same_class_partners(LABELS, partners)


def test_paired_batches_cover_every_sample_with_same_class_partners():
    x = np.arange(len(LABELS), dtype="float32")[:, None]
    batches = ClassPairedBatches(x, LABELS, batch_size=4, seed=0)
    assert len(batches) == 3
    seen = []
    for index in range(len(batches)):
        paired, y = batches[index]
        rows = paired["inputs"][:, 0].astype(int)
        partners = paired["partner_inputs"][:, 0].astype(int)
        np.testing.assert_array_equal(y, LABELS[rows])
        np.testing.assert_array_equal(LABELS[partners], y)
        assert np.all(partners != rows)
        seen.extend(rows)
    assert sorted(seen) == list(range(len(LABELS)))


def test_paired_batches_draw_new_partners_every_epoch():
    x = np.arange(len(LABELS), dtype="float32")[:, None]
    batches = ClassPairedBatches(x, LABELS, batch_size=len(LABELS), seed=0)
    epochs = []
    for _ in range(6):
        paired, _ = batches[0]
        epochs.append(tuple(paired["partner_inputs"][:, 0]))
        batches.on_epoch_end()
    assert len(set(epochs)) > 1


@tensorflow_pass_only("tf.data builds the batches; the model is not involved")
def test_partner_indices_feed_a_tf_data_pipeline():
    """The recipe of docs/headfree_self_kd.md, new partners every epoch."""
    import tensorflow as tf

    x = np.arange(len(LABELS), dtype="float32")[:, None]

    def one_epoch(seed):
        partners = tf.numpy_function(
            lambda s: class_partner_indices(LABELS, seed=int(s)), [seed], tf.int64
        )
        partners.set_shape([len(LABELS)])
        rows = tf.range(len(LABELS), dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((rows, partners)).shuffle(len(LABELS))

    def gather(row, partner):
        paired = {"inputs": tf.gather(x, row), "partner_inputs": tf.gather(x, partner)}
        return paired, tf.gather(LABELS, row)

    dataset = tf.data.Dataset.range(3).flat_map(one_epoch).map(gather).batch(5)
    batches = list(dataset.as_numpy_iterator())
    assert len(batches) == 6
    for paired, y in batches:
        rows = paired["inputs"][:, 0].astype(int)
        partners = paired["partner_inputs"][:, 0].astype(int)
        np.testing.assert_array_equal(LABELS[rows], y)
        np.testing.assert_array_equal(LABELS[partners], y)
        assert np.all(partners != rows)
