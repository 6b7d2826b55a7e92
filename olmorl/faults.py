"""Fault injection for the failure-handling tests: make a chosen actor hang, raise or die at a
chosen point, through the real stack.

`OLMORL_FAULTS` holds `;`-separated specs `POINT[:KEY=VALUE...]=ACTION`, e.g.
`learner.step:rank=1:step=3=hang`; ACTION is `hang`, `raise` or `exit`. The variable is read in
each actor's process (the actor groups forward it from the driver); unset, `inject` is a no-op.
"""

import os
import time

FAULTS_ENV = "OLMORL_FAULTS"


def planned_action(point: str, **where: object) -> str | None:
    """The action of the first spec naming `point` whose KEY=VALUE conditions all hold."""
    for spec in filter(None, os.environ.get(FAULTS_ENV, "").split(";")):
        target, _, action = spec.rpartition("=")
        name, *conditions = target.split(":")
        if name != point:
            continue
        wanted = dict(c.split("=", 1) for c in conditions)
        if all(str(where.get(key)) == value for key, value in wanted.items()):
            return action
    return None


def inject(point: str, **where: object) -> None:
    """Carries out the planned action at `point`, if any."""
    action = planned_action(point, **where)
    if action == "hang":
        while True:  # as a deadlocked collective would: no progress, no exit
            time.sleep(3600)
    if action == "raise":
        raise RuntimeError(f"injected fault at {point} ({where})")
    if action == "exit":
        os._exit(1)
    if action is not None:
        raise ValueError(f"{FAULTS_ENV}: unknown action {action!r} (hang, raise or exit)")
