"""One module per `swarmtrace` subcommand; each exposes register(subparsers)."""
