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


def _lora_count(config, r: int = 8) -> int:
    """LoRA parameters of the recipe (q/k/v in every layer), from the architecture's sizes:
    each adapted ``Linear(d_in, d_out)`` gains ``A (r x d_in)`` and ``B (d_out x r)``."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_out = config.num_attention_heads * head_dim
    kv_out = config.num_key_value_heads * head_dim
    per_layer = r * (config.hidden_size + q_out) + 2 * r * (config.hidden_size + kv_out)
    return config.num_hidden_layers * per_layer


def test_trainable_parameters_with_head(real_config):
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(real_config)
    base_total = sum(p.numel() for p in model.parameters())
    peft_model = apply_lora(model, ClassifierConfig())
    head = real_config.hidden_size * 2  # score: Linear(hidden, 2, bias=False), trained and saved
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert trainable == _lora_count(real_config) + head
    assert total == base_total + _lora_count(real_config) + head  # peft keeps the original head beside its copy
    # The head is trained and saved with the adapter (peft's modules_to_save for SEQ_CLS).
    assert any("score" in n and p.requires_grad for n, p in peft_model.named_parameters())
    assert trainable_line(peft_model).endswith(f"trainable%: {100 * trainable / total:.4f}")


def test_trainable_parameters_bare_model(real_config):
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(real_config)
    base_total = sum(p.numel() for p in model.parameters())
    peft_model = apply_lora(model, ClassifierConfig())
    trainable, total = peft_model.get_nb_trainable_parameters()
    assert (trainable, total) == (_lora_count(real_config), base_total + _lora_count(real_config))
    # the recipe's scale on Qwen3-Embedding-0.6B: about a quarter of a percent of the weights
    assert 0.2 < 100 * trainable / total < 0.3


def test_unknown_target_module(real_config):
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(real_config)
    with pytest.raises(InputError, match=r"unknown target module\(s\) qkv_proj.*q_proj"):
        apply_lora(model, ClassifierConfig(target_modules=["q_proj", "qkv_proj"]))
