"""FOCUS vs mean vs random on real text (RECIPE §2.3), end to end; slow (~3 min on 2 cores).

A source model is pretrained with the bielik engine on the shipped corpus (the session fixtures:
a 2,048-token byte-level tokenizer, 400k packed tokens); it then gets a Polish SentencePiece-style
tokenizer three times and is evaluated, before any training, on the Polish news documents
(``pl_ntrex_news``). The fast suite covers the mechanics (tests/model/test_swap.py); the full-size
measurement is benchmarks/swap_init_loss.py.
"""

import pytest

from bielik.data.corpus import shipped_corpus_dir
from bielik.model.swap import SwapTokenizerConfig, swap_tokenizer
from tests.conftest import engine_config


@pytest.mark.slow
def test_initial_polish_loss_focus_below_mean_below_random(tmp_path, tiny_model, tiny_data):
    from bielik.tokenizer.train import TokenizerTrainConfig, train_tokenizer
    from bielik.train.pretrain import PretrainConfig, pretrain

    pretrain(
        PretrainConfig(
            model=str(tiny_model),
            data=str(tiny_data),
            output=str(tmp_path / "src"),
            train=engine_config(
                steps=500,
                micro_batch_size=16,
                optim={"lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 20},
                checkpoint={"every": 0, "save_final": True},
            ),
        )
    )
    target = tmp_path / "pl-tok"
    train_tokenizer(
        TokenizerTrainConfig(
            output=str(target), style="sentencepiece", vocab_size=4096, max_chars=2_000_000, langs=["pl"]
        )
    )
    heldout = [str(shipped_corpus_dir() / "pl_ntrex_news.jsonl.gz")]
    loss = {}
    for init in ("focus", "mean", "random"):
        s = swap_tokenizer(
            SwapTokenizerConfig(
                model=str(tmp_path / "src" / "final"),
                tokenizer=str(target),
                output=str(tmp_path / init),
                init=init,
                max_chars=3_000_000,
                fasttext={"threads": 2},
                eval_inputs=heldout,
                eval_max_tokens=20_000,
            )
        )
        loss[init] = s["eval"]["loss"]
    assert loss["focus"] < loss["mean"] < loss["random"], loss
