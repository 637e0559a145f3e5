"""``python -m edgeseg.cli`` (what ``torchrun -m edgeseg.cli train ...`` runs)."""

from edgeseg.cli import main

main()
