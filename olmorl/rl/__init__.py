"""The RL loop: prompts → rollout actors → verifiers → advantages → learners → weight sync."""
