"""Pipeline steps (pure, typed functions) and the `leadscore` command line that wires them."""
