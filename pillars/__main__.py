from pillars.cli import main

raise SystemExit(main())
