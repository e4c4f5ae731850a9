"""`python -m vmcjet ...` is the `vmcjet` command."""

from vmcjet.cli import main

raise SystemExit(main())
