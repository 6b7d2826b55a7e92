"""The offline trainers (SFT, DPO) on the same learner actors as RL, and what they share: the
learner group, step planning, resumable checkpoints."""
