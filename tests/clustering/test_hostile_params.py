"""Parameters that used to crash clustering with a 500 or a traceback (issue 11, item 7)."""

from __future__ import annotations

import pytest

from qembed.errors import InputError
from qembed.clustering.pipeline import cluster

TEXTS = ["a cat on the mat", "a dog in the park", "a red sports car", "a city bus at night"]


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64, True, 1.5])
def test_seed_outside_0_to_2_pow_32_is_an_input_error(tiny_encoder, seed):
    with pytest.raises(InputError, match="seed must be an integer from 0 to 2\\*\\*32 - 1") as info:
        cluster(tiny_encoder, TEXTS, clusters=2, seed=seed)
    assert info.value.param == "seed"


def test_largest_seed_works(tiny_encoder):
    result = cluster(tiny_encoder, TEXTS, clusters=2, seed=2**32 - 1)
    assert len(result.labels) == len(TEXTS)


@pytest.mark.parametrize("min_samples", [5, 1000])
def test_hdbscan_min_samples_above_the_number_of_texts_is_an_input_error(tiny_encoder, min_samples):
    with pytest.raises(InputError, match=f"min_samples {min_samples} is larger than the 4 texts"):
        cluster(tiny_encoder, TEXTS, method="hdbscan", min_cluster_size=2, min_samples=min_samples)
    with pytest.raises(InputError, match="positive integer"):
        cluster(tiny_encoder, TEXTS, method="hdbscan", min_cluster_size=2, min_samples=True)


def test_unpaired_surrogate_in_a_text_is_an_input_error(tiny_encoder):
    with pytest.raises(InputError, match="texts\\[1\\] holds an unpaired surrogate \\(U\\+D800\\)"):
        cluster(tiny_encoder, ["fine", "bro\ud800ken", "also fine"], clusters=2)
    with pytest.raises(InputError, match="surrogate"):
        tiny_encoder.encode(["ok", "\udfff"])
