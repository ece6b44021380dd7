"""The Keras 3 model for the TF1 MLP checkpoint in this directory.

    ckpt migrate model.ckpt-1000 --model models.py:build --preset keras-names out.weights.h5

The checkpoint was written by a TF1 graph of three ReLU layers (``hidden1``..``hidden3``) and a
linear ``softmax_linear`` layer, with TF1's ``weights``/``biases`` names; ``--preset
keras-names`` calls them ``kernel``/``bias``. Adam's slots, ``beta*_power`` and ``global_step``
are optimizer state the model does not take (reported as ignored).
"""

import keras


def build() -> keras.Model:
    return keras.Sequential(
        [keras.Input((16,))]
        + [keras.layers.Dense(n, activation="relu", name=f"hidden{i}")
           for i, n in enumerate((32, 32, 16), start=1)]
        + [keras.layers.Dense(10, name="softmax_linear")],
        name="mlp",
    )
