from sepbn.cli import main

raise SystemExit(main())
