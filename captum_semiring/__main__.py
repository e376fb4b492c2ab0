"""``python -m captum_semiring`` (and ``torchrun -m captum_semiring``): the command line."""

from .cli import main

raise SystemExit(main())
