"""The recipe's LoRA on the real Qwen3-Embedding-0.6B architecture (meta device: no memory, no weights)."""

from __future__ import annotations

import pytest
import torch

from qembed.errors import InputError
from qembed.train.pair_classifier import ClassifierConfig, apply_lora, trainable_line


@pytest.fixture(scope="module")
def real_config(qwen_reference):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(qwen_reference))
    config.num_labels = 2
    config.pad_token_id = 151645
    return config


def test_recipe_defaults():
    cfg = ClassifierConfig()
    assert (cfg.max_length, cfg.batch_size, cfg.epochs) == (64, 128, 15)
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (8, 32, 0.1)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj"]


def test_trainable_parameters_with_head(real_config):
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(real_config)
    peft_model = apply_lora(model, ClassifierConfig())
    assert peft_model.get_nb_trainable_parameters() == (1_607_680, 597_386_240)
    # The head is trained and saved with the adapter (peft's modules_to_save for SEQ_CLS).
    assert any("score" in n and p.requires_grad for n, p in peft_model.named_parameters())
    assert trainable_line(peft_model).endswith("trainable%: 0.2691")


def test_trainable_parameters_bare_model(real_config):
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(real_config)
    peft_model = apply_lora(model, ClassifierConfig())
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert (trainable, total) == (1_605_632, 597_382_144)
    assert f"{100 * trainable / total:.4f}" == "0.2688"


def test_unknown_target_module(real_config):
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(real_config)
    with pytest.raises(InputError, match=r"unknown target module\(s\) qkv_proj.*q_proj"):
        apply_lora(model, ClassifierConfig(target_modules=["q_proj", "qkv_proj"]))
