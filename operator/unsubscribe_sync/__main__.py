from unsubscribe_sync.cli import main

raise SystemExit(main())
