"""``python -m memoryd.daemon``: the same as the ``memoryd`` command."""

from memoryd.daemon.main import main

raise SystemExit(main())
