"""The training engine and its objectives.

One loop (:mod:`bielik.train.engine`) serves every stage; what differs between continued
pretraining, SFT, DPO-P, GRPO and distillation is the *objective* (:mod:`bielik.train.objectives`)
and the batch source.
"""
