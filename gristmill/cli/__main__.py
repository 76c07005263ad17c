from gristmill.cli.main import main

raise SystemExit(main())
