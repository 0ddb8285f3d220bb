from gantry_node.cli import main

raise SystemExit(main())
