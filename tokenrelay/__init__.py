"""The ``tokenrelay`` command: what wires the gateway, the worker and dev mode together."""
