from fgbg.cli import main

raise SystemExit(main())
