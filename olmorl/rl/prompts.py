"""The order prompts are drawn in: a seeded permutation per epoch, so a seed fixes the order."""

import random


class PromptSampler:
    def __init__(self, num_prompts: int, seed: int, shuffle: bool = True):
        if num_prompts < 1:
            raise ValueError("the training data holds no prompts")
        self.num_prompts, self.seed, self.shuffle = num_prompts, seed, shuffle
        self.epoch, self.position = 0, 0
        self.excluded: set[int] = set()
        self._order_excluded: list[int] = []  # the exclusions this epoch's order was drawn with
        self._order = self._permutation()

    def take(self, count: int) -> list[int]:
        """The next `count` prompt indices, crossing into the next epoch when one runs out."""
        taken = []
        while len(taken) < count:
            if self.position == len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            taken.append(self._order[self.position])
            self.position += 1
        return taken

    def exclude(self, index: int) -> None:
        """Leaves prompt `index` out from the next epoch on (it is solved)."""
        self.excluded.add(index)

    def state(self) -> dict:
        """Where the sampler is, for a checkpoint: `restore(state())` continues identically."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "excluded": sorted(self.excluded),
            "order_excluded": self._order_excluded,
        }

    def restore(self, state: dict) -> None:
        # This epoch's order was drawn before the latest exclusions, which apply from the next.
        self.excluded = set(state["order_excluded"])
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation()
        self.excluded = set(state["excluded"])

    def _permutation(self) -> list[int]:
        self._order_excluded = sorted(self.excluded)
        order = [i for i in range(self.num_prompts) if i not in self.excluded]
        if not order:
            raise RuntimeError(
                f"every one of the {self.num_prompts} prompts is excluded by "
                "algo.pass_rate_exclusion: the data set is solved"
            )
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        return order
