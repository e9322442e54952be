"""One module per ``sac-rag`` sub-command; each defines ``register(subparsers)``.

``register`` adds its parser and sets ``func=run`` where ``run(args) -> int`` is the exit code.
Modules are discovered, so adding a command is adding a file.
"""
