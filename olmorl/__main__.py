"""`python -m olmorl` is the `olmorl` command (what `ray job submit` entrypoints call)."""

from olmorl.cli import main

main()
