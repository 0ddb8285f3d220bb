from gantry_node.cli import main

# guarded: worker processes are started with "spawn", which imports this module again
if __name__ == "__main__":
    raise SystemExit(main())
