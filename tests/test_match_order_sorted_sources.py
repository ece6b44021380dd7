"""``match="order"`` on an npz whose members are listed by name (converted from a TF bundle,
whose keys are sorted): that order says nothing about creation order, so numbered scopes pair
in natural order (``layer2`` before ``layer10``), as they do from the bundle itself."""

from __future__ import annotations

import numpy as np

import converter
from tests.helpers import assert_same

UNITS = 2


def _model(n: int):
    import keras

    return keras.Sequential([keras.Input((UNITS,))] + [keras.layers.Dense(UNITS, name=f"fc{i}")
                                                       for i in range(n)], name="m")


def test_npz_converted_from_a_tf1_bundle_pairs_in_natural_order(tf, tmp_path):
    v1 = tf.compat.v1
    with tf.Graph().as_default():
        for i in range(1, 12):
            with v1.variable_scope(f"layer{i}"):
                v1.get_variable("kernel", initializer=np.full((UNITS, UNITS), i, np.float32))
                v1.get_variable("bias", initializer=np.full(UNITS, i, np.float32))
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            prefix = v1.train.Saver().save(sess, str(tmp_path / "m.ckpt"),
                                           write_meta_graph=False)
    converter.write(converter.read(prefix), tmp_path / "m.npz", format="npz")
    model = _model(11)
    report = converter.load_into(model, tmp_path / "m.npz", match="order")
    assert report.ok
    reader = tf.train.load_checkpoint(prefix)
    for i, layer in enumerate(model.layers, 1):
        assert_same(np.asarray(layer.kernel), reader.get_tensor(f"layer{i}/kernel"), layer.name)
        assert_same(np.asarray(layer.bias), reader.get_tensor(f"layer{i}/bias"), layer.name)
